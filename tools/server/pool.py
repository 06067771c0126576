"""The function's worker processes, handed out to requests as Nuclio's processor hands out workers."""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import traceback
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from alphapose.cvat.errors import ConfigError
from alphapose.errors import AlphaPoseError
from tools.errors import EventTimeoutError, WorkerDiedError, WorkerStartError
from tools.server.events import DEFAULT_HANDLER, create_context, init_function, load_entrypoint, run_handler


def _worker_main(worker_id: int, handler_spec: str, connection: Connection) -> None:
    """One runtime process: init once, then answer events until the server closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server process owns shutdown
    try:
        module, entrypoint = load_entrypoint(handler_spec)
        context = create_context(sys.stderr, worker_id=worker_id)
        init_function(module, context)
        model = getattr(context.user_data, "model", None)
        status: tuple[str, Any] = ("ready", model.info() if hasattr(model, "info") else {})
    except BaseException as exc:
        if not isinstance(exc, ConfigError | AlphaPoseError):  # a setting or weights file the user can fix
            traceback.print_exc()  # is told in the server's one line; anything else needs its traceback
        status = ("failed", f"{type(exc).__name__}: {exc}")
    try:
        connection.send(status)
    except OSError:  # the server stopped (Ctrl-C) while this worker was starting: nobody is listening
        return
    if status[0] != "ready":
        return
    while True:
        try:
            message = connection.recv_bytes()
        except EOFError:
            return
        connection.send_bytes(run_handler(entrypoint, context, message).encode("utf-8"))


class _Worker:
    def __init__(self, worker_id: int, handler_spec: str) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.id = worker_id
        self.connection, child = spawn.Pipe()
        self.process = spawn.Process(
            target=_worker_main, args=(worker_id, handler_spec, child), name=f"function-worker-{worker_id}"
        )
        self.process.start()
        child.close()

    def wait_ready(self) -> dict[str, Any]:
        try:
            status, payload = self.connection.recv()
        except EOFError:
            self.process.join()
            status, payload = "failed", f"worker {self.id} exited with code {self.process.exitcode}"
        if status != "ready":
            raise WorkerStartError(payload)
        return payload

    def close(self, timeout: float = 5.0) -> None:
        self.connection.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class _Waiter:
    """One request waiting for a worker: the pool hands a worker to it directly."""

    def __init__(self) -> None:
        self.handed = threading.Event()
        self.worker: _Worker | None = None


class WorkerPool:
    """N runtime processes; a request borrows an idle one or gives up after the availability timeout.

    Waiting requests get workers strictly in arrival order, as Nuclio's processor hands workers out
    through a Go channel: a freed worker goes to the longest-waiting request, never to a newcomer, so
    no request waits behind later ones until it times out.
    """

    def __init__(self, size: int, handler_spec: str = DEFAULT_HANDLER) -> None:
        if size < 1:
            raise ValueError(f"at least one worker is needed, got {size}")
        self.size = size
        self.handler_spec = handler_spec
        self.info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._idle: deque[_Worker] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._workers: list[_Worker] = []

    def start(self) -> None:
        """Start all workers in parallel and wait until every ``init_context`` has finished."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start every worker process; they load the model in parallel."""
        self._workers = [_Worker(i, self.handler_spec) for i in range(self.size)]

    def wait_ready(self) -> None:
        """Wait for every launched worker's ``init_context``; on any failure (or Ctrl-C) stop them all."""
        try:
            for worker in self._workers:
                self.info = worker.wait_ready()
        except WorkerStartError:
            self.close()
            raise
        except KeyboardInterrupt:
            self.close(timeout=0)  # still loading: nothing of theirs is worth waiting for
            raise
        for worker in self._workers:
            self._release(worker)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def call(
        self, message: bytes, availability_timeout: float, event_timeout: float | None = None
    ) -> str | None:
        """The runtime's response line, or None when no worker became free in time.

        Raises :class:`EventTimeoutError` when the worker has not answered after ``event_timeout`` seconds
        and :class:`WorkerDiedError` when it exited; either way it is replaced by a fresh process, as the
        platform restarts it, so a late answer can never reach the next request.
        """
        worker = self._acquire(availability_timeout)
        if worker is None:
            return None
        try:
            worker.connection.send_bytes(message)
            if event_timeout is not None and not worker.connection.poll(event_timeout):
                self._restart(worker)
                raise EventTimeoutError(
                    f"worker {worker.id} did not answer within {event_timeout:g} s; restarted"
                )
            line = worker.connection.recv_bytes().decode("utf-8")
        except (EOFError, OSError) as exc:
            self._restart(worker)
            raise WorkerDiedError(f"worker {worker.id} died while handling a request") from exc
        self._release(worker)
        return line

    def _acquire(self, timeout: float) -> _Worker | None:
        with self._lock:
            if self._idle:
                return self._idle.popleft()
            waiter = _Waiter()
            self._waiters.append(waiter)
        if waiter.handed.wait(timeout):
            return waiter.worker
        with self._lock:
            if waiter.worker is None:
                self._waiters.remove(waiter)
            return waiter.worker  # None, or a worker handed over just as the wait timed out

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.worker = worker
                waiter.handed.set()
            else:
                self._idle.append(worker)

    def _restart(self, worker: _Worker) -> None:
        threading.Thread(target=self._replace, args=(worker,), daemon=True).start()

    def _replace(self, dead: _Worker) -> None:
        """Start a fresh process in a dead or stuck worker's slot, as the platform restarts a failed one."""
        dead.close(timeout=0)
        replacement = _Worker(dead.id, self.handler_spec)
        self._workers[self._workers.index(dead)] = replacement
        try:
            replacement.wait_ready()
        except WorkerStartError as exc:
            print(f"error: worker {dead.id} failed to restart; its slot stays empty: {exc}", file=sys.stderr)
            return
        self._release(replacement)

    def close(self, timeout: float = 5.0) -> None:
        """Close every worker's pipe (a serving worker then exits) and wait up to ``timeout`` for each."""
        for worker in self._workers:
            worker.close(timeout)
