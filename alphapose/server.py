"""A local HTTP server that runs the function exactly as Nuclio's HTTP trigger and Python runtime do.

Every POST takes the runtime's path: the request becomes the msgpack event map the Go processor
sends, ``nuclio_sdk.Event.deserialize`` turns it into the handler's event (a dict body only for
exactly ``application/json``), the handler's output is encoded by
``nuclio_sdk.Response.from_entrypoint_output`` and sent back as the processor would, and an exception
escaping the handler becomes the wrapper's 500 ``text/plain`` answer. Like a Nuclio trigger with
``numWorkers: N`` it runs N worker processes, each with its own ``init_context``; requests wait for a
free worker in arrival order for up to the worker-availability timeout and then get 503; a worker that
has not answered within the event timeout is killed and restarted and its request gets 408; bodies
over the size limit get 413. ``GET /`` answers health and what is loaded.

The event encoding helpers are public because ``tests/nuclio_harness.py`` drives the function
in-process through the same code.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import multiprocessing
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit
from urllib.request import urlopen

import msgpack
import nuclio_sdk
import nuclio_sdk.json_encoder
import nuclio_sdk.logger

DEFAULT_HANDLER = "main:handler"
DEFAULT_MAX_BODY_SIZE = 33_554_432  # function.yaml's maxRequestBodySize (Nuclio's own default is 4 MiB)
DEFAULT_WORKER_AVAILABILITY_TIMEOUT = 10.0  # seconds, Nuclio's workerAvailabilityTimeoutMilliseconds
DEFAULT_EVENT_TIMEOUT = 60.0  # seconds, function.yaml's eventTimeout on CPU
CONNECTION_TIMEOUT = 60.0  # seconds a client may stay silent while the server reads its request
DEFAULT_TRIGGER = nuclio_sdk.TriggerInfo(kind="http", name="default-http")
# main.py and model_handler.py sit next to the package, as in the function image's /opt/nuclio.
FUNCTION_ROOT = Path(__file__).resolve().parent.parent

_HANDLER_SPEC = re.compile(r"^([\w|-]+(\.[\w|-]+)*):(\w+)$")  # the runtime's module.sub:function syntax


@dataclass(frozen=True)
class HandlerResult:
    """What the processor turns a runtime response into: the HTTP answer."""

    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def encode_event(
    body: bytes,
    *,
    content_type: str = "",
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
    fields: Mapping[str, str] | None = None,
    event_id: str | None = None,
    trigger: nuclio_sdk.TriggerInfo = DEFAULT_TRIGGER,
) -> bytes:
    """The msgpack event map the Go processor writes to the runtime for one HTTP request.

    The body travels as msgpack bin (not base64) and the content type verbatim from the header,
    under both keys the processor uses.
    """
    event = {
        "body": bytes(body),
        "content_type": content_type,
        "content-type": content_type,
        "trigger": {"kind": trigger.kind, "name": trigger.name},
        "fields": dict(fields or {}),
        "headers": dict(headers or {}),
        "id": event_id or str(uuid.uuid4()),
        "method": method,
        "path": path,
        "size": len(body),
        "timestamp": int(time.time()),
        "url": "",
        "shard_id": 0,
        "num_shards": 0,
        "type": "",
        "type_version": "",
        "version": "",
        "offset": 0,
        "topic": "",
    }
    return msgpack.packb(event, use_bin_type=True)


def decode_event(message: bytes) -> nuclio_sdk.Event:
    """The runtime's side: unpack with decoded strings and let the SDK build the event."""
    return nuclio_sdk.Event.deserialize(
        msgpack.unpackb(message, raw=False), kind=nuclio_sdk.EventDeserializerKinds.msgpack
    )


def run_handler(entrypoint: Callable[[Any, Any], Any], context: nuclio_sdk.Context, message: bytes) -> str:
    """One event through the runtime: the JSON response line the wrapper sends to the processor."""
    encoder = nuclio_sdk.json_encoder.Encoder()
    try:
        output = entrypoint(context, decode_event(message))
        return encoder.encode(nuclio_sdk.Response.from_entrypoint_output(encoder.encode, output))
    except Exception as exc:
        formatted = traceback.format_exc()
        context.logger.error_with("Exception caught in handler", exc=str(exc), traceback=formatted)
        return encoder.encode(
            {
                "body": f'Exception caught in handler - "{exc}": {formatted}',
                "body_encoding": "text",
                "content_type": "text/plain",
                "status_code": 500,
            }
        )


def decode_result(line: str) -> HandlerResult:
    """The processor's side: body decoding and the header values the HTTP trigger copies (str, int)."""
    result = json.loads(line)
    encoding = result.get("body_encoding", "text")
    if encoding == "base64":
        body = base64.b64decode(result["body"])
    elif encoding == "text":
        body = str(result["body"]).encode("utf-8")
    else:
        raise ValueError(f"unknown body_encoding {encoding!r} in the runtime response")
    headers = {
        str(key): str(value)
        for key, value in (result.get("headers") or {}).items()
        if isinstance(value, str | int) and not isinstance(value, bool)
    }
    return HandlerResult(int(result["status_code"]), result.get("content_type") or "", headers, body)


def load_entrypoint(spec: str) -> tuple[ModuleType, Callable[[Any, Any], Any]]:
    """The module and function named by a ``module.sub:function`` handler spec, as the runtime loads it."""
    match = _HANDLER_SPEC.match(spec)
    if not match:
        raise ValueError(f"malformed handler {spec!r}; expected module:function")
    if str(FUNCTION_ROOT) not in sys.path:
        sys.path.insert(0, str(FUNCTION_ROOT))
    module_name, function_name = match.group(1), match.group(3)
    module = __import__(module_name)
    for part in module_name.split(".")[1:]:
        module = getattr(module, part)
    return module, getattr(module, function_name)


def create_context(
    stream: IO[str],
    *,
    worker_id: int = 0,
    trigger: nuclio_sdk.TriggerInfo = DEFAULT_TRIGGER,
    formatter: logging.Formatter | None = None,
) -> nuclio_sdk.Context:
    """A runtime context whose real nuclio_sdk logger writes to ``stream``.

    The logger name is unique per context: nuclio_sdk loggers are ``logging`` loggers looked up by name.
    """
    logger = nuclio_sdk.Logger(logging.DEBUG, name=f"alphapose.function.{uuid.uuid4().hex[:8]}")
    logger.set_handler("default", stream, formatter or nuclio_sdk.logger.HumanReadableFormatter())
    return nuclio_sdk.Context(logger, nuclio_sdk.Platform("local"), worker_id, trigger)


def init_function(module: ModuleType, context: nuclio_sdk.Context) -> None:
    """Call the module's ``init_context`` if it has one, as the runtime does before serving."""
    init_context = getattr(module, "init_context", None)
    if init_context is not None:
        init_context(context)


# --- worker processes -------------------------------------------------------------------------------


def _worker_main(worker_id: int, handler_spec: str, connection: Connection) -> None:
    """One runtime process: init once, then answer events until the server closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server process owns shutdown
    try:
        module, entrypoint = load_entrypoint(handler_spec)
        context = create_context(sys.stderr, worker_id=worker_id)
        init_function(module, context)
        model = getattr(context.user_data, "model", None)
        connection.send(("ready", model.info() if hasattr(model, "info") else {}))
    except BaseException as exc:
        traceback.print_exc()
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            message = connection.recv_bytes()
        except EOFError:
            return
        connection.send_bytes(run_handler(entrypoint, context, message).encode("utf-8"))


class WorkerStartError(RuntimeError):
    """A worker's ``init_context`` failed; the message is the worker's error."""


class WorkerDiedError(RuntimeError):
    """A worker process exited while it handled a request."""


class EventTimeoutError(RuntimeError):
    """A worker did not answer within the event timeout."""


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
        self._workers = [_Worker(i, self.handler_spec) for i in range(self.size)]
        try:
            for worker in self._workers:
                self.info = worker.wait_ready()
        except WorkerStartError:
            self.close()
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

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


# --- HTTP -------------------------------------------------------------------------------------------


class FunctionServer(ThreadingHTTPServer):
    """The HTTP trigger: one thread per connection, one worker per request."""

    daemon_threads = True
    # Connections the kernel holds until they are accepted; socketserver's default of 5 makes it reset
    # the connections of a crowd of clients that connect at once.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        pool: WorkerPool,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        availability_timeout: float = DEFAULT_WORKER_AVAILABILITY_TIMEOUT,
        event_timeout: float | None = DEFAULT_EVENT_TIMEOUT,
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.pool = pool
        self.max_body_size = max_body_size
        self.availability_timeout = availability_timeout
        self.event_timeout = event_timeout

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _RequestHandler(BaseHTTPRequestHandler):
    server: FunctionServer
    server_version = "alphapose-function"
    timeout = CONNECTION_TIMEOUT  # a client that stops sending cannot hold its thread forever

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not_found", "detail": "GET / reports health"})
            return
        pool = self.server.pool
        self._send_json(
            HTTPStatus.OK,
            {
                "status": "ok",
                **pool.info,
                "handler": pool.handler_spec,
                "workers": pool.size,
                "idle_workers": pool.idle,
            },
        )

    def do_POST(self) -> None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._send_json(
                HTTPStatus.LENGTH_REQUIRED, {"error": "length_required", "detail": "send Content-Length"}
            )
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "invalid_body", "detail": "bad Content-Length"})
            return
        if length > self.server.max_body_size:
            self.close_connection = True  # the body is not read; this connection cannot be reused
            self._send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {
                    "error": "body_too_large",
                    "detail": f"the body has {length} bytes; the limit is {self.server.max_body_size}",
                },
            )
            return
        body = self.rfile.read(length)
        if len(body) < length:  # the client hung up mid-body: nobody is left to answer
            self.close_connection = True
            return
        url = urlsplit(self.path)
        message = encode_event(
            body,
            content_type=self.headers.get("Content-Type", ""),
            headers=dict(self.headers.items()),
            method=self.command,
            path=url.path,
            fields=dict(parse_qsl(url.query)),
        )
        try:
            line = self.server.pool.call(message, self.server.availability_timeout, self.server.event_timeout)
        except EventTimeoutError as exc:
            self._send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": "handler_timed_out", "detail": str(exc)})
            return
        except WorkerDiedError as exc:
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "worker_died", "detail": str(exc)})
            return
        if line is None:
            self._send_json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "error": "no_worker_available",
                    "detail": f"all {self.server.pool.size} workers stayed busy for "
                    f"{self.server.availability_timeout:g} s",
                },
            )
            return
        result = decode_result(line)
        self._send(result.status, result.content_type, result.body, result.headers)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(payload).encode("utf-8"))

    def _send(
        self, status: int, content_type: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    handler: str = DEFAULT_HANDLER,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    availability_timeout: float = DEFAULT_WORKER_AVAILABILITY_TIMEOUT,
    event_timeout: float | None = DEFAULT_EVENT_TIMEOUT,
) -> int:
    """Run until SIGINT or SIGTERM; the exit status (1 when a worker failed to start).

    The socket is bound only after every worker is ready, as Nuclio starts its trigger, and the
    address is printed on stdout (``Listening on http://HOST:PORT``) for scripts that pass port 0.
    """
    pool = WorkerPool(workers, handler)
    try:
        pool.start()
    except WorkerStartError as exc:
        print(f"error: the function failed to start: {exc}", file=sys.stderr)
        return 1
    server = FunctionServer((host, port), pool, max_body_size, availability_timeout, event_timeout)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"Listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        pool.close()
    return 0


class ServerProcess:
    """``python -m alphapose serve`` in a subprocess on a free port, for tests and scripts that need the
    real server. Its log (stderr) goes to ``log_path``; ``url`` is None when it did not start listening
    within ``start_timeout`` (the log says why). ``ALPHAPOSE_*`` variables come only from ``env``."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *options: str, start_timeout: float = 180.0
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOSE_")}
        environ.update(env)
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alphapose", "serve", "--port", "0", *options],
            cwd=FUNCTION_ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=start_timeout)
        except queue.Empty:
            first = ""
        match = re.match(r"Listening on (http://\S+)", first)
        self.url = match.group(1) if match else None

    def health(self) -> dict[str, Any]:
        """The server's ``GET /`` answer."""
        with urlopen(self.url, timeout=30) as answer:
            return json.load(answer)

    def worker_pids(self) -> list[int]:
        """The worker processes: the server's children started by multiprocessing's spawn."""
        pids = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(pid))
        return sorted(pids)

    def log(self) -> str:
        return self.log_path.read_text()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options (shared by ``python -m alphapose serve``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each loading the model (default: %(default)s)",
    )
    parser.add_argument("--handler", default=DEFAULT_HANDLER, help="module:function (default: %(default)s)")
    parser.add_argument(
        "--max-body-size",
        type=int,
        default=DEFAULT_MAX_BODY_SIZE,
        help="larger request bodies get 413 (default: %(default)s bytes)",
    )
    parser.add_argument(
        "--worker-availability-timeout",
        type=float,
        default=DEFAULT_WORKER_AVAILABILITY_TIMEOUT,
        help="seconds a request waits for a free worker before 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--event-timeout",
        type=float,
        default=DEFAULT_EVENT_TIMEOUT,
        help="seconds a worker may take for one request before it is restarted and the request gets "
        "408 (default: %(default)s)",
    )
