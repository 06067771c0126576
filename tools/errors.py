"""The tools' exceptions (the local server's worker pool)."""


class WorkerStartError(RuntimeError):
    """A worker's ``init_context`` failed; the message is the worker's error."""


class WorkerDiedError(RuntimeError):
    """A worker process exited while it handled a request."""


class EventTimeoutError(RuntimeError):
    """A worker did not answer within the event timeout."""
