"""The local server: Nuclio's event encoding in-process, then the real server over real HTTP."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import nuclio_sdk
import numpy as np
import pytest
import requests
from nuclio_harness import cvat_violations, server_env
from PIL import Image
from repo_paths import REPO

from alphapose.cvat.spec import label_spec
from alphapose.pose.skeletons import COCO17
from tools.errors import WorkerStartError
from tools.server.events import create_context, decode_event, decode_result, encode_event, run_handler
from tools.server.pool import WorkerPool
from tools.server.process import ServerProcess

# The Go processor's event map: nuclio pkg/processor/runtime/rpc/encoder/encode.go (eventAsMap).
PROCESSOR_KEYS = {
    "body", "content_type", "content-type", "trigger", "fields", "headers", "id", "method", "path", "size",
    "timestamp", "url", "shard_id", "num_shards", "type", "type_version", "version", "offset", "topic",
}  # fmt: skip


def png_b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


SMALL_IMAGE_B64 = png_b64(np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (96, 1, 3)))


# --- the runtime's event path, in-process ------------------------------------------------------------


def test_event_map_has_the_processor_keys_and_a_binary_body() -> None:
    message = encode_event(
        b'{"a": 1}', content_type="application/json", headers={"X-A": "b"}, path="/p", fields={"q": "1"}
    )
    raw = msgpack.unpackb(message, raw=True)
    assert {key.decode() for key in raw} == PROCESSOR_KEYS
    assert raw[b"body"] == b'{"a": 1}'  # msgpack bin, not base64 text
    assert raw[b"size"] == 8
    assert raw[b"trigger"] == {b"kind": b"http", b"name": b"default-http"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", {"a": 1}),
        ("application/json; charset=utf-8", b'{"a": 1}'),
        ("text/plain", b'{"a": 1}'),
        ("", b'{"a": 1}'),
    ],
)
def test_event_body_is_a_dict_only_for_exactly_application_json(content_type: str, body: object) -> None:
    event = decode_event(
        encode_event(b'{"a": 1}', content_type=content_type, method="PUT", path="/x", event_id="e1")
    )
    assert event.body == body
    assert (event.content_type, event.method, event.path, event.id) == (content_type, "PUT", "/x", "e1")
    assert isinstance(event.timestamp, datetime.datetime)


def run(output_or_exception: object) -> object:
    def entrypoint(context: nuclio_sdk.Context, event: nuclio_sdk.Event) -> object:
        if isinstance(output_or_exception, BaseException):
            raise output_or_exception
        return output_or_exception

    log = io.StringIO()
    result = decode_result(run_handler(entrypoint, create_context(log), encode_event(b"")))
    return result, log.getvalue()


def test_runtime_encodes_handler_outputs_as_nuclio_does() -> None:
    text, _ = run("hello")
    assert (text.status, text.content_type, text.body) == (200, "text/plain", b"hello")
    pair, _ = run((201, {"a": [1, 2]}))
    assert (pair.status, pair.content_type, pair.json()) == (201, "application/json", {"a": [1, 2]})
    response = nuclio_sdk.Response(
        body=b"\x00\xff",
        content_type="image/png",
        status_code=202,
        headers={"X-N": 3, "X-S": "s", "X-B": True},
    )
    binary, _ = run(response)
    assert (binary.status, binary.content_type, binary.body) == (202, "image/png", b"\x00\xff")
    # Only strings reach the client: the processor decodes the response's JSON numbers as float64 and the
    # HTTP trigger copies string and int header values only (see tools.server.events.decode_result).
    assert binary.headers == {"X-S": "s"}


@pytest.mark.parametrize("exception", [ValueError("boom"), SystemExit("boom"), KeyboardInterrupt("boom")])
def test_exception_escaping_the_handler_is_a_500_with_the_traceback(exception: BaseException) -> None:
    """The wrapper's serve_requests loop catches BaseException: SystemExit answers 500 like any error."""
    result, log = run(exception)
    assert (result.status, result.content_type) == (500, "text/plain")
    assert result.body.startswith(b'Exception caught in handler - "boom": Traceback')
    assert "Exception caught in handler" in log and "[error]" in log


def echo_handler(context: nuclio_sdk.Context, event: nuclio_sdk.Event) -> str:
    """A handler for worker-pool tests: echoes the body, or kills its process on b"crash"."""
    if event.body == b"crash":
        os._exit(3)
    return event.body.decode()


def test_worker_pool_replaces_a_worker_that_died() -> None:
    pool = WorkerPool(1, "test_server:echo_handler")
    pool.start()
    try:
        assert decode_result(pool.call(encode_event(b"hello"), 5)).body == b"hello"
        with pytest.raises(RuntimeError, match="worker 0 died"):
            pool.call(encode_event(b"crash"), 5)
        assert pool.call(encode_event(b"too soon"), 0.001) is None  # the replacement is still starting
        assert decode_result(pool.call(encode_event(b"again"), 60)).body == b"again"
    finally:
        pool.close()


def test_worker_pool_reports_a_failed_start() -> None:
    with pytest.raises(WorkerStartError, match="AttributeError"):
        WorkerPool(1, "test_server:no_such_handler").start()


# --- the real server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """Two workers, a 200 kB body limit and a 0.2 s worker-availability timeout."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    options = ("--workers", "2", "--max-body-size", "200000", "--worker-availability-timeout", "0.2")
    server = ServerProcess(server_env(weights_dir), log, *options)
    assert server.url, server.log()
    yield server
    server.stop()


def test_health_reports_the_model_and_workers(server: ServerProcess, weights_dir: Path) -> None:
    reply = requests.get(server.url + "/", timeout=10)
    assert reply.status_code == 200
    health = reply.json()
    assert health["status"] == "ok"
    assert (health["preset"], health["device"], health["workers"], health["idle_workers"]) == (
        "fastpose_res50_coco",
        "cpu",
        2,
        2,
    )
    assert health["keypoints"] == list(COCO17.keypoints)
    assert health["weights"] == {
        str(weights_dir / "yolov3-spp.weights"): "synthetic",
        str(weights_dir / "fast_res50_256x192.pth"): "synthetic",
    }
    # each worker process ran its own init_context
    assert server.log().count("AlphaPose model loaded") == 2
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 404


def test_cvat_request_over_http(server: ServerProcess) -> None:
    reply = requests.post(server.url, json={"image": SMALL_IMAGE_B64, "threshold": 0.5}, timeout=60)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/json"
    answer = reply.json()
    assert cvat_violations(answer, label_spec(COCO17)) == []
    assert len(answer) == 1 and answer[0]["confidence"] == pytest.approx(0.9)
    # what `nuctl invoke` sends without -c: the body reaches the handler as bytes, same answer
    sniffed = requests.post(
        server.url,
        data=json.dumps({"image": SMALL_IMAGE_B64, "threshold": 0.5}),
        headers={"Content-Type": "text/plain; charset=utf-8"},
        timeout=60,
    )
    assert (sniffed.status_code, sniffed.json()) == (200, answer)


def test_bad_request_over_http(server: ServerProcess) -> None:
    reply = requests.post(server.url, json={"image": "not base64!"}, timeout=60)
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_base64"
    reply = requests.post(server.url, data=b"{", headers={"Content-Type": "application/json"}, timeout=60)
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_json")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_other_methods_get_a_json_405_with_allow(server: ServerProcess, method: str) -> None:
    reply = requests.request(method, server.url, data=b"{}", timeout=30)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "GET, POST"
    if method != "HEAD":  # a HEAD answer has no body
        assert reply.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("request_line", "status"),
    [(b"PRI * HTTP/2.0", b"505"), (b"HELLO", b"400"), (b"GET / HTTP/1.1 extra", b"400")],
    ids=["http2 prior knowledge", "one word", "four words"],
)
def test_a_request_line_the_server_cannot_parse_gets_a_status_line_and_json(
    server: ServerProcess, request_line: bytes, status: bytes
) -> None:
    """Such an error was the JSON body alone, as to an HTTP/0.9 client: curl reported an empty reply."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request_line + b"\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 " + status + b" "), answer
    assert b"Content-Type: application/json" in head
    assert set(json.loads(body)) == {"error", "detail"}


def test_body_over_the_limit_is_413_and_the_server_keeps_serving(server: ServerProcess) -> None:
    reply = requests.post(server.url, json={"image": "A" * 250_000}, timeout=60)
    assert reply.status_code == 413
    assert reply.json()["error"] == "body_too_large"
    assert "200000" in reply.json()["detail"]
    assert requests.get(server.url, timeout=10).json()["idle_workers"] == 2


@pytest.mark.slow
def test_busy_workers_give_503_after_the_availability_timeout(server: ServerProcess) -> None:
    # 16 megapixels keep each worker busy well beyond the time it takes to see them busy and ask again.
    big = {"image": png_b64(np.zeros((4000, 4000, 3), dtype=np.uint8))}
    replies = []

    def post_big() -> None:
        replies.append(requests.post(server.url, json=big, timeout=120))

    slow = [threading.Thread(target=post_big) for _ in range(2)]
    for thread in slow:
        thread.start()
    deadline = time.monotonic() + 60
    while requests.get(server.url, timeout=10).json()["idle_workers"] != 0:
        assert time.monotonic() < deadline and len(replies) < 2, (
            "the slow requests never occupied both workers"
        )
        time.sleep(0.005)
    busy = requests.post(server.url, json={"image": SMALL_IMAGE_B64}, timeout=60)
    for thread in slow:
        thread.join()
    assert busy.status_code == 503
    assert busy.json()["error"] == "no_worker_available"
    assert [reply.status_code for reply in replies] == [200, 200]
    assert requests.post(server.url, json={"image": SMALL_IMAGE_B64}, timeout=60).status_code == 200


def test_sigint_stops_the_server_cleanly(server: ServerProcess) -> None:
    assert server.stop(signal.SIGINT) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url, timeout=5)


@pytest.mark.slow  # a subprocess or two of several seconds: make test-slow (CI runs both)
def test_server_does_not_start_without_weights(tmp_path: Path) -> None:
    server = ServerProcess(server_env(tmp_path), tmp_path / "server.log")
    assert server.url is None
    assert server.stop() == 1
    log = server.log()
    assert "failed to start" in log and "yolov3-spp.weights" in log and "fast_res50_256x192.pth" in log
    assert "Traceback" not in log  # a setting the user can fix: the error line names it


@pytest.mark.slow
def test_server_does_not_start_with_a_bad_variable_and_names_it_without_a_traceback(
    weights_dir: Path, tmp_path: Path
) -> None:
    env = {**server_env(weights_dir), "ALPHAPOSE_DETECTOR_SIZE": "abc"}
    server = ServerProcess(env, tmp_path / "server.log")
    assert server.url is None
    assert server.stop() == 1
    log = server.log()
    assert "Traceback" not in log, log
    assert (
        log.strip()
        .splitlines()[-1]
        .startswith("error: the function failed to start: ConfigError: invalid ALPHAPOSE_DETECTOR_SIZE='abc'")
    )


def test_busy_port_fails_at_once_with_one_line_and_no_model_load(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tools", "serve", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **server_env(tmp_path)},  # no weights there: nothing may get that far
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what uses it or choose "
        "another port with --port"
    ]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert time.monotonic() - started < 30  # a Python start, no worker, no model


def _workers(pid: int) -> list[int]:
    """The server's worker processes (multiprocessing's spawn children; imports start other programs)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    children = [c for task in tasks for c in (task / "children").read_text().split()]
    return [int(c) for c in children if b"spawn_main" in _cmdline(c)]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it has exited meanwhile
        return b""


@pytest.mark.parametrize("moment", ["importing", "workers starting"])
def test_ctrl_c_at_any_moment_of_start_up_exits_without_a_traceback(
    weights_dir: Path, tmp_path: Path, moment: str
) -> None:
    """Interrupted while ``python -m tools`` imports (``predict``'s module imports PyTorch for seconds;
    ``serve``'s are done in a fraction of one), or while the server's workers start."""
    log = tmp_path / "server.log"
    photo = tmp_path / "photo.jpg"  # predict refuses a missing image before it imports PyTorch
    Image.new("RGB", (64, 48)).save(photo)
    command = ["predict", str(photo)] if moment == "importing" else ["serve", "--port", "0"]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools", *command],
            cwd=REPO,
            env={**os.environ, **server_env(weights_dir)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, as a terminal's job
            # A terminal's job takes Ctrl-C; a test run in the background (CI) may have it ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        if moment == "importing":
            time.sleep(0.3)
        else:  # a worker process exists: it is importing PyTorch or loading the model
            while not _workers(process.pid):
                assert time.monotonic() < deadline and process.poll() is None, log.read_text()
                time.sleep(0.05)
            time.sleep(0.5)  # past the few milliseconds in which the server itself ignores Ctrl-C
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends: the whole group
        assert process.wait(timeout=60) == 130
        process.stdout.close()
    text = log.read_text()
    assert "Traceback" not in text, text
    expected = "interrupted while the workers were starting" if moment != "importing" else "interrupted"
    assert text.strip().splitlines()[-1] == expected
