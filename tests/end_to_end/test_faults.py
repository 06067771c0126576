"""Faults and safety: broken weights at start, failures inside the pipeline, stuck workers, crowds.

Start-up and in-process faults go through the Nuclio harness. Faults over HTTP use the local server's
own classes (:class:`FunctionServer`, :class:`WorkerPool`) with this module's ``handler`` as the worker
entry point: it is ``main.handler``, except that a request carrying the ``X-Inject-Fault`` header has
that fault raised inside the pose network, after the detector ran. Every answer carries the worker's
process id, so a test can tell whether the same process kept serving or a fresh one replaced it.

The synthetic detector finds one person whose box is the whole image, so a COCO answer whose box is
[0, 0, width, height] of the request's own image (each test uses sizes of its own) is that request's.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
from nuclio_harness import NuclioFunction, function_environment, server_env
from PIL import Image
from torch import nn

import main
from alphapose.errors import WeightsError
from tools.errors import WorkerStartError
from tools.server.events import FUNCTION_ROOT
from tools.server.http import FunctionServer
from tools.server.pool import WorkerPool

FAULT_HEADER = "X-Inject-Fault"
PID_HEADER = "X-Worker-Pid"
CHECKPOINT = "fast_res50_256x192.pth"
DETECTOR = "yolov3-spp.weights"


def coco_request(width: int, height: int, image_id: str) -> dict[str, Any]:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 4 % 256, y * 4 % 256, (x + y) % 256], axis=2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode(), "format": "coco", "image_id": image_id}


def assert_own_answer(answer: Any, width: int, height: int, image_id: str) -> None:
    (person,) = answer
    assert person["image_id"] == image_id
    assert person["box"] == pytest.approx([0, 0, width, height])


# --- the worker entry point with injected faults -----------------------------------------------------


FAULTS = {
    "out_of_memory": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    "error": lambda: RuntimeError("injected failure inside the pose network"),
}


class FaultyNetwork(nn.Module):
    """Stands in for the pose network: raises the named fault, or never answers ("hang")."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if self.fault == "hang":
            time.sleep(3600)  # until the server gives up on this worker and kills it
        raise FAULTS[self.fault]()


init_context = main.init_context


def handler(context: Any, event: Any) -> Any:
    """``main.handler``, with the fault named by the request's X-Inject-Fault header injected."""
    pipeline = context.user_data.model.pipeline
    network = pipeline.pose_model
    fault = event.headers.get(FAULT_HEADER)
    if fault:
        pipeline.pose_model = FaultyNetwork(fault)
    try:
        response = main.handler(context, event)
    finally:
        pipeline.pose_model = network
    response.headers[PID_HEADER] = str(os.getpid())
    return response


# --- weights missing or corrupt at start -------------------------------------------------------------


CORRUPTIONS = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: np.random.default_rng(0).bytes(len(data) // 1000),
}


def weights_with_corrupt(weights_dir: Path, target: Path, name: str, corruption: str) -> Path:
    """A weights directory like ``weights_dir`` whose file ``name`` is damaged."""
    target.mkdir()
    for file in (CHECKPOINT, DETECTOR):
        if file != name:
            (target / file).symlink_to(weights_dir / file)
    (target / name).write_bytes(CORRUPTIONS[corruption]((weights_dir / name).read_bytes()))
    return target


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("name", [CHECKPOINT, DETECTOR])
def test_corrupt_weights_fail_init_naming_the_file(
    weights_dir: Path, tmp_path: Path, name: str, corruption: str
) -> None:
    directory = weights_with_corrupt(weights_dir, tmp_path / "weights", name, corruption)
    with pytest.raises(WeightsError) as info:
        NuclioFunction(server_env(directory))
    message = str(info.value)
    assert str(directory / name) in message
    other = DETECTOR if name == CHECKPOINT else CHECKPOINT
    assert other not in message
    assert "truncated" in message and "ALPHAPOSE_WEIGHTS_DIR" in message


@pytest.mark.slow
def test_truncated_weights_stop_the_server_worker_with_the_file_named(
    weights_dir: Path, tmp_path: Path
) -> None:
    directory = weights_with_corrupt(weights_dir, tmp_path / "weights", DETECTOR, "truncated")
    with function_environment(server_env(directory)), pytest.raises(WorkerStartError) as info:
        WorkerPool(1).start()
    assert str(info.value).startswith("WeightsError: ")
    assert str(directory / DETECTOR) in str(info.value) and "short" in str(info.value)


# --- failures inside a request, in-process -----------------------------------------------------------


@pytest.fixture(scope="module")
def function(weights_dir: Path) -> NuclioFunction:
    return NuclioFunction(server_env(weights_dir))


def test_out_of_memory_releases_the_request_before_emptying_the_cache(
    function: NuclioFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache can only give back memory no tensor holds: the failed request's tensors, kept alive by
    the exception's frames, must be gone when ``empty_cache`` runs."""
    held: list[weakref.ref] = []
    alive_at_empty_cache: list[bool] = []

    class OutOfMemoryMidway(nn.Module):
        def forward(self, crops: torch.Tensor) -> torch.Tensor:
            activations = torch.ones(64, 1024)
            held.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(function.model.pipeline, "pose_model", OutOfMemoryMidway())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: alive_at_empty_cache.append(held[0]() is not None))
    result = function.post_json(coco_request(41, 31, "oom"))
    assert (result.status, result.json()["error"]) == (503, "out_of_memory")
    assert alive_at_empty_cache == [False]
    monkeypatch.undo()
    after = function.post_json(coco_request(42, 32, "after-oom"))
    assert after.status == 200
    assert_own_answer(after.json(), 42, 32, "after-oom")


# --- failures over HTTP, through the local server's worker processes ---------------------------------


@pytest.fixture(scope="module")
def fault_server(weights_dir: Path) -> Iterator[FunctionServer]:
    """One worker running this module's ``handler``; the environment stays set for restarted workers."""
    with function_environment(server_env(weights_dir)):
        pool = WorkerPool(1, "test_faults:handler")
        pool.start()
        server = FunctionServer(("127.0.0.1", 0), pool, availability_timeout=300, event_timeout=120)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
        server.shutdown()
        server.server_close()
        pool.close()


def post(
    server: FunctionServer, payload: dict[str, Any], fault: str | None = None, timeout: float = 600
) -> requests.Response:
    headers = {FAULT_HEADER: fault} if fault else {}
    return requests.post(server.url, json=payload, headers=headers, timeout=timeout)


def good_answer_pid(server: FunctionServer, width: int, height: int) -> str:
    """Post a good request, check its answer is its own, and return the serving worker's process id."""
    image_id = f"{width}x{height}"
    reply = post(server, coco_request(width, height, image_id))
    assert reply.status_code == 200, reply.text
    assert_own_answer(reply.json(), width, height, image_id)
    return reply.headers[PID_HEADER]


def test_exception_in_the_pipeline_is_500_and_the_worker_keeps_serving(fault_server: FunctionServer) -> None:
    before = good_answer_pid(fault_server, 51, 37)
    reply = post(fault_server, coco_request(52, 37, "broken"), fault="error")
    assert (reply.status_code, reply.headers["Content-Type"]) == (500, "application/json")
    answer = reply.json()
    assert answer["error"] == "internal_error"
    assert re.fullmatch(
        r"RuntimeError while handling request [0-9a-f-]{36}; see the function log", answer["detail"]
    )
    assert "injected" not in reply.text and "Traceback" not in reply.text
    assert good_answer_pid(fault_server, 53, 37) == before


def test_out_of_memory_is_503_and_the_worker_keeps_serving(fault_server: FunctionServer) -> None:
    before = good_answer_pid(fault_server, 61, 45)
    reply = post(fault_server, coco_request(62, 45, "oom"), fault="out_of_memory")
    assert reply.status_code == 503
    assert reply.json()["error"] == "out_of_memory"
    assert "retry" in reply.json()["detail"]
    assert good_answer_pid(fault_server, 63, 45) == before


@pytest.mark.slow  # waits out a request timeout and a worker's restart
def test_stuck_worker_is_408_and_replaced(
    fault_server: FunctionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = good_answer_pid(fault_server, 71, 53)
    monkeypatch.setattr(fault_server, "event_timeout", 2.0)
    reply = post(fault_server, coco_request(72, 53, "stuck"), fault="hang", timeout=120)  # never forever
    monkeypatch.undo()
    assert reply.status_code == 408
    assert reply.json()["error"] == "handler_timed_out"
    # the next request waits for the fresh worker to load the model, then gets its own answer
    after = good_answer_pid(fault_server, 73, 53)
    assert after != before
    assert not Path(f"/proc/{before}").exists()  # killed and reaped, not left running
    assert requests.get(fault_server.url, timeout=30).json()["idle_workers"] == 1


def test_concurrent_requests_beyond_the_workers_all_get_their_own_answers(
    fault_server: FunctionServer,
) -> None:
    sizes = [(80 + i, 60 + 2 * i) for i in range(3)]
    replies: dict[tuple[int, int], requests.Response] = {}

    def send(size: tuple[int, int]) -> None:
        replies[size] = post(fault_server, coco_request(*size, f"{size[0]}x{size[1]}"))

    threads = [threading.Thread(target=send, args=(size,)) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replies) == sizes
    for (width, height), reply in replies.items():
        assert reply.status_code == 200
        assert_own_answer(reply.json(), width, height, f"{width}x{height}")


# --- the worker pool's queue -------------------------------------------------------------------------


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_waiting_requests_get_workers_in_arrival_order_and_newcomers_do_not_jump_the_queue() -> None:
    pool = WorkerPool(1)
    worker = object()
    pool._release(worker)
    assert pool._acquire(0) is worker
    served: list[str] = []
    done = {name: threading.Event() for name in ("first", "second", "third")}

    def wait_use_and_release(name: str) -> None:
        got = pool._acquire(60)
        served.append(name)
        done[name].wait(60)
        pool._release(got)

    threads = []
    for number, name in enumerate(done, start=1):
        threads.append(threading.Thread(target=wait_use_and_release, args=(name,)))
        threads[-1].start()
        wait_until(lambda n=number: len(pool._waiters) == n, f"{name} never queued")
    pool._release(worker)
    assert pool._acquire(0) is None  # handed to the first waiter, not to a newcomer
    for name in done:
        done[name].set()
    for thread in threads:
        thread.join()
    assert served == ["first", "second", "third"]
    assert pool.idle == 1


def test_a_waiter_that_timed_out_does_not_swallow_the_next_free_worker() -> None:
    pool = WorkerPool(1)
    assert pool._acquire(0.01) is None
    assert len(pool._waiters) == 0
    pool._release("worker")
    assert pool.idle == 1 and pool._acquire(0) == "worker"


# --- safety ------------------------------------------------------------------------------------------


def python_sources() -> list[Path]:
    return [
        FUNCTION_ROOT / "main.py",
        FUNCTION_ROOT / "model_handler.py",
        *(FUNCTION_ROOT / "alphapose").rglob("*.py"),
    ]


def test_weights_are_only_ever_loaded_without_running_code() -> None:
    """Every ``torch.load`` passes ``weights_only=True``; nothing unpickles or evaluates anything else."""
    loads, problems = 0, []
    for path in python_sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(FUNCTION_ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                if any(
                    name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "marshal", "shelve")
                    for name in names
                ):
                    problems.append(f"{where}: imports {names}")
            if not isinstance(node, ast.Call):
                continue
            function = ast.unparse(node.func)
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            if function in ("torch.load", "torch.serialization.load"):
                loads += 1
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where}: {ast.unparse(node)}")
            if function in ("eval", "exec", "pickle.loads", "pickle.load"):
                problems.append(f"{where}: {function}")
            allow_pickle = keywords.get("allow_pickle")
            if allow_pickle is not None and not (
                isinstance(allow_pickle, ast.Constant) and allow_pickle.value is False
            ):
                problems.append(f"{where}: {ast.unparse(node)}")
    assert problems == []
    assert loads >= 1  # the checker sees the loader that exists


_FILE_EVENTS: list[tuple[str, str]] = []
_RECORDING = threading.Event()


def _record_file_access(event: str, args: tuple) -> None:
    if _RECORDING.is_set() and (event == "open" or event.startswith(("os.", "shutil.", "subprocess."))):
        _FILE_EVENTS.append((event, repr(args)[:200]))


sys.addaudithook(_record_file_access)  # inert unless a test is recording

PATH_LIKE = ("../../etc/passwd", "/etc/shadow", "file:///etc/hostname", "~/.ssh/id_rsa")
PATH_PARTS = ("passwd", "shadow", "etc/hostname", "id_rsa")  # what an access to one of them would name


def path_like_requests() -> list[dict[str, Any]]:
    """Path-like strings in every field that could be mistaken for a file name, and in fields named like
    the function's configuration: one good request, then bad ones that stop at each field."""
    good = coco_request(47, 35, PATH_LIKE[0])
    configuration = {
        "weights_dir": PATH_LIKE[1],
        "preset": PATH_LIKE[2],
        "path": PATH_LIKE[3],
        "file": PATH_LIKE[1],
    }
    return [
        {**good, **configuration},
        *({"image": value} for value in PATH_LIKE),
        *({**good, "format": value} for value in PATH_LIKE),
        {"image": base64.b64encode(PATH_LIKE[0].encode()).decode()},
    ]


def test_no_request_field_is_used_as_a_path(function: NuclioFunction) -> None:
    """Requests with path-like values in every field never touch a file named by one of them; the second
    time round (lazy imports done) they open, list, write or run nothing at all."""
    passes = []
    for _ in range(2):
        _FILE_EVENTS.clear()
        _RECORDING.set()
        try:
            results = [function.post_json(request) for request in path_like_requests()]
        finally:
            _RECORDING.clear()
        passes.append(list(_FILE_EVENTS))
        assert [result.status for result in results] == [200] + [400] * 9
        assert_own_answer(results[0].json(), 47, 35, PATH_LIKE[0])  # the image_id is echoed as data
    named = [event for event in passes[0] if any(part in event[1] for part in PATH_PARTS)]
    assert named == []
    assert passes[1] == []


def test_json_bodies_are_parsed_once(function: NuclioFunction) -> None:
    """A JSON string holding JSON is a string, whatever the content type says."""
    doubly_encoded = json.dumps(json.dumps(coco_request(30, 20, "twice"))).encode()
    for content_type in ("application/json", "text/plain"):
        result = function.invoke(doubly_encoded, content_type=content_type)
        assert (result.status, result.json()["error"]) == (400, "invalid_body")
