"""The HTTP trigger of the local server: ``python -m tools serve``.

Like a Nuclio trigger with ``numWorkers: N`` it runs N worker processes (:mod:`tools.server.pool`), each
with its own ``init_context``; requests wait for a free worker in arrival order for up to the
worker-availability timeout and then get 503; a worker that has not answered within the event timeout is
killed and restarted and its request gets 408; bodies over the size limit get 413. ``GET /`` answers
health and what is loaded.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tools.errors import CommandError, EventTimeoutError, WorkerDiedError, WorkerStartError
from tools.server.events import DEFAULT_HANDLER, decode_result, encode_event, handler_problem
from tools.server.pool import WorkerPool
from tools.server.trigger import (
    EVENT_TIMEOUT_SECONDS,
    MAX_REQUEST_BODY_SIZE,
    WORKER_AVAILABILITY_TIMEOUT_SECONDS,
)

# the CPU function files' trigger settings
DEFAULT_MAX_BODY_SIZE = MAX_REQUEST_BODY_SIZE
DEFAULT_WORKER_AVAILABILITY_TIMEOUT = float(WORKER_AVAILABILITY_TIMEOUT_SECONDS)
DEFAULT_EVENT_TIMEOUT = float(EVENT_TIMEOUT_SECONDS["cpu"])
CONNECTION_TIMEOUT = 60.0  # seconds a client may stay silent while the server reads its request
ALLOWED_METHODS = ("GET", "POST")


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
        bind_and_activate: bool = True,
    ) -> None:
        super().__init__(address, _RequestHandler, bind_and_activate)
        self.pool = pool
        self.max_body_size = max_body_size
        self.availability_timeout = availability_timeout
        self.event_timeout = event_timeout

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


SERVER_NAME = "alphapose-function"  # the Server header's product name; clients recognise this server by it


class _RequestHandler(BaseHTTPRequestHandler):
    server: FunctionServer
    server_version = SERVER_NAME
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
        # Two differing lengths, or a length beside Transfer-Encoding, make the body's end ambiguous (one
        # would be read, the rest taken for the next request on the connection); a proxy in front may
        # have taken the other (RFC 9112, 6.3).
        ambiguous = (
            len(set(self.headers.get_all("Content-Length", []))) > 1 or "Transfer-Encoding" in self.headers
        )
        if length < 0 or ambiguous:
            self.close_connection = True
            detail = (
                "send one Content-Length header holding the body's size in bytes, and no Transfer-Encoding"
            )
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "invalid_body", "detail": detail})
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

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by the HTTP layer itself (unsupported method, malformed request) as JSON too."""
        if self.request_version == "HTTP/0.9":  # a request line not parsed: any client here speaks HTTP/1.x,
            self.request_version = "HTTP/1.0"  # and the answer of HTTP/0.9 (the body alone) reads as none
        if code == HTTPStatus.NOT_IMPLEMENTED and self.command not in ALLOWED_METHODS:
            self.close_connection = True
            detail = f"{self.command} is not served; send POST with the request, or GET / for health"
            body = json.dumps({"error": "method_not_allowed", "detail": detail}).encode("utf-8")
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED, "application/json", body, {"Allow": ", ".join(ALLOWED_METHODS)}
            )
            return
        self.close_connection = True
        status = HTTPStatus(code)
        self._send_json(
            status,
            {"error": status.phrase.lower().replace(" ", "_"), "detail": message or status.description},
        )

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
    """Run until SIGINT or SIGTERM; the exit status (130 after Ctrl-C during start-up). A port that is
    taken or a worker that fails to start is a :class:`CommandError` (status 1), a flag value it cannot
    run with or an unknown host one of status 2.

    The address is claimed first, so a busy port fails at once, before any model loads; connections are
    accepted only after every worker is ready, as Nuclio starts its trigger. The address is printed on
    stdout (``Listening on http://HOST:PORT``) for scripts that pass port 0.
    """
    problem = _flags_problem(port, workers, handler, max_body_size, availability_timeout, event_timeout)
    if problem:
        raise CommandError(problem)
    pool = WorkerPool(workers, handler)
    server = FunctionServer(
        (host, port), pool, max_body_size, availability_timeout, event_timeout, bind_and_activate=False
    )
    try:
        server.server_bind()
    except socket.gaierror as exc:
        server.server_close()
        raise CommandError(f"cannot listen on --host {host}: {exc.strerror or exc}", 2) from None
    except OSError as exc:
        server.server_close()
        if exc.errno == errno.EADDRNOTAVAIL:  # a name that resolves to an address of another machine
            raise CommandError(f"cannot listen on --host {host}: {exc.strerror}", 2) from None
        raise CommandError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses it or choose "
            "another port with --port",
            1,
        ) from None
    # Ctrl-C in a terminal reaches the whole process group, and only the server decides what it means: an
    # ignored signal stays ignored in a process started meanwhile (Python keeps it so), so the workers
    # never see it, from their first instruction on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pool.launch()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        pool.wait_ready()
    except WorkerStartError as exc:
        server.server_close()
        raise CommandError(f"the function failed to start: {exc}", 1) from None
    except KeyboardInterrupt:
        server.server_close()
        print("interrupted while the workers were starting", file=sys.stderr)
        return 130
    server.server_activate()

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


def _flags_problem(
    port: int,
    workers: int,
    handler: str,
    max_body_size: int,
    availability_timeout: float,
    event_timeout: float | None,
) -> str | None:
    """The first of ``serve``'s flags that holds a value it cannot run with, named as typed; None when none
    does. Checked before anything starts: each would otherwise be a traceback, or a server refusing or
    timing out every request."""
    if not 0 <= port <= 65535:
        return f"invalid --port {port}: must be 0 to 65535 (0 picks a free one)"
    if workers < 1:
        return f"invalid --workers {workers}: must be at least 1"
    if problem := handler_problem(handler):
        return f"invalid --handler {handler!r}: {problem}"
    if max_body_size < 1:
        return f"invalid --max-body-size {max_body_size}: must be a number of bytes >= 1"
    if not 0 <= availability_timeout < math.inf:
        flag = "--worker-availability-timeout"
        return f"invalid {flag} {availability_timeout!r}: must be a number of seconds >= 0"
    if event_timeout is not None and not 0 < event_timeout < math.inf:
        return f"invalid --event-timeout {event_timeout!r}: must be a number of seconds > 0"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options of ``python -m tools serve``."""
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
