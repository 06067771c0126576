"""The tools' exceptions (a user's mistake, the local server's worker pool), and how a network failure
is told in one line."""

from __future__ import annotations

import socket
import ssl
import sys


class WorkerStartError(RuntimeError):
    """A worker's ``init_context`` failed; the message is the worker's error."""


class WorkerDiedError(RuntimeError):
    """A worker process exited while it handled a request."""


class EventTimeoutError(RuntimeError):
    """A worker did not answer within the event timeout."""


def network_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of a failure to reach a server or to keep talking to it (urllib3 directly, as the
    CVAT SDK uses it, or through requests), as opposed to an answer; for an ``except`` clause."""
    import requests
    import urllib3

    return (urllib3.exceptions.HTTPError, requests.ConnectionError, requests.Timeout)


def network_problem(exc: BaseException) -> str:
    """What went wrong on the way to the server, in a few words: the root of urllib3's and requests'
    wrapped exceptions (a retry error around a connection error around a socket error)."""
    import urllib3

    chain = [exc]
    while True:
        cause = chain[-1]
        if isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
            chain.append(cause.reason)
        elif inner := next((a for a in cause.args if isinstance(a, BaseException)), None):
            chain.append(inner)  # requests' wrappers, urllib3's ProtocolError("...", socket error)
        elif isinstance(cause, urllib3.exceptions.NewConnectionError) and cause.__cause__ is not None:
            chain.append(cause.__cause__)
        else:
            break
    cause = chain[-1]
    if any(isinstance(c, urllib3.exceptions.NameResolutionError | socket.gaierror) for c in chain):
        return "its host name does not resolve"
    if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
        return "the connection was refused (nothing listens on that port)"
    if any(isinstance(c, urllib3.exceptions.TimeoutError | TimeoutError) for c in chain):
        return "it did not answer in time"
    if any(isinstance(c, urllib3.exceptions.SSLError | ssl.SSLError) for c in chain):
        return f"the TLS handshake failed ({cause}); is the scheme right (http:// or https://)?"
    return f"the connection failed ({cause})"


def interrupted(resume: str) -> int:
    """Ctrl-C's one line, saying how to go on from the work kept (``resume``), and its exit status: for the
    commands that keep their work as they go (``python -m tools`` says a bare ``interrupted`` for others)."""
    print(f"interrupted: {resume}", file=sys.stderr)
    return 130


def http_url(text: str) -> bool:
    """Whether ``text`` is an address requests can post to: http or https, with a host."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(text)
        return url.scheme in ("http", "https") and bool(url.hostname)
    except ValueError:  # a malformed IPv6 address or port
        return False


def check_threshold(flag: str, value: float) -> float:
    """A score threshold flag's value, which must lie in [0, 1] as the request's ``threshold`` does: NaN or a
    value outside would silently drop every person (or none) rather than fail."""
    if not 0.0 <= value <= 1.0:  # False for NaN too
        raise CommandError(f"invalid {flag} {value!r}: must be a person (box) score in [0, 1]")
    return value


class CommandError(Exception):
    """Something the user can fix: ``python -m tools`` prints ``error: <message>`` on one line and exits
    with ``status`` (2 for a bad command line or setting, 1 for a file or server that failed)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status

    def report(self) -> int:
        """Print the error's one line on stderr and answer its exit status: for the error that ends a
        command and for one that ends only a part of it (a task of several), so both read alike."""
        print(f"error: {self}", file=sys.stderr)
        return self.status
