"""``python -m tools``: predict and render locally, call a function as CVAT does, and the drawing."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import redirect_stderr
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
from nuclio_harness import cvat_violations, server_env
from PIL import Image
from repo_paths import REPO

from alphapose.cvat.spec import label_spec
from alphapose.pose.skeletons import COCO17
from tools.cli import main
from tools.render import CENTRE_COLOUR, LEFT_COLOUR, RIGHT_COLOUR, draw_skeletons
from tools.server.process import ServerProcess

GREY = 90
MODEL_OPTIONS = ["--detector-size", "160", "--device", "cpu"]


def write_image(path: Path, width: int = 64, height: int = 96) -> Path:
    Image.new("RGB", (width, height), (GREY, GREY, GREY)).save(path)
    return path


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def skeleton(points: list[tuple[float, float]], outside: set[int], names=COCO17.keypoints) -> dict:
    return {
        "label": "person",
        "type": "skeleton",
        "elements": [
            {"label": name, "type": "points", "points": list(p), "outside": i in outside}
            for i, (name, p) in enumerate(zip(names, points, strict=True))
        ],
    }


# --- drawing -----------------------------------------------------------------------------------------


def test_draw_skeletons_draws_visible_points_and_edges_only() -> None:
    image = np.full((200, 200, 3), GREY, dtype=np.uint8)
    points = [(20.0 + 9 * i, 30.0 + 7 * i) for i in range(17)]
    points[5], points[7] = (40.0, 150.0), (120.0, 150.0)  # left_shoulder - left_elbow: a visible edge
    points[6], points[8] = (40.0, 180.0), (120.0, 180.0)  # right_shoulder - right_elbow: elbow outside
    drawn = draw_skeletons(
        image, [skeleton(points, outside={8, 16}), {"type": "rectangle", "points": [0, 0, 9, 9]}]
    )
    assert (image == GREY).all()  # the input is not modified
    assert np.abs(drawn[150, 80].astype(int) - LEFT_COLOUR).max() < 40  # left arm edge (anti-aliased)
    assert (drawn[180, 80] == GREY).all()  # the edge to an outside keypoint is not drawn
    np.testing.assert_array_equal(drawn[180, 40], RIGHT_COLOUR)  # the visible right shoulder
    assert (drawn[180, 120] == GREY).all()  # the outside right elbow
    np.testing.assert_array_equal(drawn[30, 20], CENTRE_COLOUR)  # the nose
    x, y = points[16]
    assert (drawn[round(y), round(x)] == GREY).all()


def test_draw_skeletons_with_unknown_names_draws_points_without_edges() -> None:
    image = np.full((60, 60, 3), GREY, dtype=np.uint8)
    drawn = draw_skeletons(image, [skeleton([(10.0, 10.0), (50.0, 10.0)], set(), names=("a", "b"))])
    np.testing.assert_array_equal(drawn[10, 10], CENTRE_COLOUR)
    assert (drawn[10, 30] == GREY).all()


# --- predict -----------------------------------------------------------------------------------------


def test_predict_writes_cvat_json_and_a_rendered_png(weights_dir: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "person.png")
    out, render = tmp_path / "out" / "results.json", tmp_path / "drawn.png"
    argv = [
        "predict",
        str(image),
        "--out",
        str(out),
        "--render",
        str(render),
        "--weights-dir",
        str(weights_dir),
    ]
    assert main([*argv, *MODEL_OPTIONS]) == 0
    results = json.loads(out.read_text())
    assert list(results) == [str(image)]
    (person,) = results[str(image)]
    assert cvat_violations([person], label_spec(COCO17)) == []
    drawn = read_rgb(render)
    assert drawn.shape == (96, 64, 3)
    colours = {LEFT_COLOUR, RIGHT_COLOUR, CENTRE_COLOUR}
    visible = [e["points"] for e in person["elements"] if not e["outside"]]
    inside = [(round(x), round(y)) for x, y in visible if 0 <= round(x) < 64 and 0 <= round(y) < 96]
    assert inside, "no visible keypoint inside the image to check"
    for x, y in inside:
        assert tuple(int(v) for v in drawn[y, x]) in colours


def test_predict_says_in_one_line_that_the_weights_are_synthetic(
    weights_dir: Path, unmarked_weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", str(write_image(tmp_path / "a.png")), "--out", str(tmp_path / "a.json")]
    assert main([*argv, "--weights-dir", str(weights_dir), *MODEL_OPTIONS]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "synthetic" in line]
    assert warned == [
        f"warning: {weights_dir / 'yolov3-spp.weights'}, {weights_dir / 'fast_res50_256x192.pth'}: synthetic "
        "random weights (written by tools.synthetic_weights), not the official files; the poses found mean "
        "nothing"
    ]
    assert main([*argv, "--weights-dir", str(unmarked_weights_dir), *MODEL_OPTIONS]) == 0
    assert "synthetic" not in capsys.readouterr().err


def test_predict_coco_format_for_several_images(weights_dir: Path, tmp_path: Path) -> None:
    images = [write_image(tmp_path / "a.png"), write_image(tmp_path / "b.jpg", 80, 40)]
    out, render_dir = tmp_path / "results.json", tmp_path / "drawn"
    argv = ["predict", *map(str, images), "--format", "coco", "--out", str(out), "--render", str(render_dir)]
    assert main([*argv, "--weights-dir", str(weights_dir), *MODEL_OPTIONS]) == 0
    results = json.loads(out.read_text())
    assert [r["image_id"] for r in results] == ["a.png", "b.jpg"]
    assert results[1]["box"] == pytest.approx([0, 0, 80, 40])
    assert all(len(r["keypoints"]) == 51 for r in results)
    assert sorted(p.name for p in render_dir.iterdir()) == ["a.png", "b.png"]


def test_predict_reports_configuration_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = write_image(tmp_path / "x.png")
    assert main(["predict", str(image), "--weights-dir", str(tmp_path), "--device", "cpu"]) == 2
    assert "yolov3-spp.weights" in capsys.readouterr().err
    assert main(["predict", str(image), "--preset", "nope"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: invalid --preset 'nope': unknown preset; choose one of:"
    )
    assert main(["predict", str(image), "--device", "cuda:3", "--weights-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err  # the flag the user typed, not the variable
    assert "--device 'cuda:3'" in err and "ALPHAPOSE_DEVICE" not in err
    assert main(["predict", str(image), str(image), "--render", str(tmp_path / "one.png")]) == 2


def test_predict_on_a_file_that_is_no_image_speaks_as_a_command_line_tool(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    args = [
        "predict",
        str(notes),
        "--weights-dir",
        str(weights_dir),
        "--device",
        "cpu",
        "--detector-size",
        "64",
    ]
    assert main(args) == 1
    (warning, error) = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: ") and "synthetic random weights" in warning  # the test's weights
    assert error.startswith(f"error: cannot use {notes} as an image: ")
    assert "400" not in error and "invalid_image" not in error


def test_predict_takes_the_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = write_image(tmp_path / "x.png")
    assert main(["predict", str(image), "--precision", "half"]) == 2
    assert "--precision 'half': expected one of auto, fp32, bf16, fp16" in capsys.readouterr().err


# --- call --------------------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Records what a client posts and answers with a canned CVAT answer or error."""

    requests: ClassVar[list[tuple[dict, bytes]]] = []
    status = 200
    answer = b"[]"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((dict(self.headers.items()), body))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.requests = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_call_posts_what_cvat_posts(recorder: HTTPServer, tmp_path: Path) -> None:
    image = write_image(tmp_path / "frame.png")
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    assert main(["call", url, str(image), "--out", str(tmp_path / "a.json")]) == 0
    assert main(["call", url, str(image), "--threshold", "0.3", "--out", str(tmp_path / "b.json")]) == 0
    (headers, first), (_, second) = _Recorder.requests
    assert headers["Content-Type"] == "application/json"
    assert json.loads(first) == {
        "image": base64.b64encode(image.read_bytes()).decode("ascii")
    }  # no threshold
    assert json.loads(second) == {"image": json.loads(first)["image"], "threshold": 0.3}
    assert json.loads((tmp_path / "a.json").read_text()) == []


def test_call_reports_an_error_answer(
    recorder: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Recorder, "status", 400)
    monkeypatch.setattr(_Recorder, "answer", b'{"error": "invalid_image", "detail": "x"}')
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    assert main(["call", url, str(write_image(tmp_path / "f.png"))]) == 1
    assert capsys.readouterr().err == f"error: {url} answered HTTP 400 invalid_image: x\n"
    # the runtime's 500 for an exception escaping the handler: its traceback is the body
    monkeypatch.setattr(_Recorder, "status", 500)
    monkeypatch.setattr(
        _Recorder,
        "answer",
        b'Exception caught in handler - "boom": Traceback (most recent call last):\n  File',
    )
    assert main(["call", url, str(write_image(tmp_path / "f.png"))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {url} answered HTTP 500 Exception caught"), err


def closed_port_url() -> str:
    """An address where nothing listens: a port the system gave out and that was closed again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("url", [closed_port_url(), "http://no-such-host.invalid"])
def test_network_failures_are_one_line_naming_the_server_and_what_to_check(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = str(write_image(tmp_path / "f.png"))
    assert main(["call", url, image]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot reach the function at {url}: ")
    assert "refused" in err or "does not resolve" in err
    assert "check the URL and that the function runs" in err

    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    assert main(["annotate-task", "5", "--server-host", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot reach CVAT at {url}: ")
    assert "refused" in err or "does not resolve" in err
    assert "check --server-host" in err


def test_annotate_task_needs_a_server_and_says_when_it_is_not_cvat(
    recorder: HTTPServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No default address (CVAT's usual one is the local pose server's too), and a server that answers
    something else than CVAT's API is named as such, in one line."""
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    assert main(["annotate-task", "5"]) == 2
    assert capsys.readouterr().err == (
        "error: --server-host: give CVAT's address, e.g. --server-host http://localhost:8080\n"
    )
    url = f"http://127.0.0.1:{recorder.server_address[1]}"  # answers GET with 501
    assert main(["annotate-task", "5", "--server-host", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--server-host {url} answers, but not as CVAT (HTTP 501" in err


@pytest.mark.slow  # a subprocess or two of several seconds: make test-slow (CI runs both)
def test_call_against_the_local_function_server(weights_dir: Path, tmp_path: Path) -> None:
    server = ServerProcess(server_env(weights_dir), tmp_path / "server.log")
    try:
        assert server.url, server.log()
        image = write_image(tmp_path / "frame.jpg", 48, 64)
        out, render = tmp_path / "answer.json", tmp_path / "answer.png"
        argv = [
            "call",
            server.url,
            str(image),
            "--threshold",
            "0.5",
            "--out",
            str(out),
            "--render",
            str(render),
        ]
        assert main(argv) == 0
        # annotate-task pointed at it by mistake says what it reached.
        with pytest.MonkeyPatch.context() as patch, redirect_stderr(io.StringIO()) as err:
            patch.setenv("CVAT_ACCESS_TOKEN", "token")
            assert main(["annotate-task", "5", "--server-host", server.url]) == 2
        assert err.getvalue() == (
            f"error: --server-host {server.url} answers, but not as CVAT (HTTP 404 Not Found for "
            "/api/server/about; it is the pose function's local server (make serve)): give CVAT's "
            "address, e.g. http://localhost:8080\n"
        )
    finally:
        assert server.stop() == 0
    answer = json.loads(out.read_text())
    assert cvat_violations(answer, label_spec(COCO17)) == []
    assert len(answer) == 1
    assert read_rgb(render).shape == (64, 48, 3)


@pytest.mark.parametrize("value", ["2", "-0.1", "nan", "inf"])
@pytest.mark.parametrize("command", ["predict", "call", "annotate-task"])
def test_a_threshold_outside_0_1_is_one_line_naming_the_flag(
    command: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before anything loads or connects: such a threshold would drop every person, or none, silently."""
    image = str(write_image(tmp_path / "f.png"))
    argv = {
        "predict": ["predict", image, "--weights-dir", str(tmp_path)],
        "call": ["call", closed_port_url(), image],
        "annotate-task": ["annotate-task", "5", "--server-host", closed_port_url()],
    }[command]
    assert main([*argv, "--threshold", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: invalid --threshold {float(value)!r}: ")


@pytest.mark.parametrize("flag", ["--out", "--render"])
@pytest.mark.parametrize("video", [False, True], ids=["image", "frames"])
def test_an_output_that_cannot_be_written_is_one_line_naming_the_flag(
    flag: str, video: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path under a regular file (or a directory where a file goes) cannot be written: said before the
    model loads (there are no weights here, so a later check would report those), not after the work."""
    weights_dir = tmp_path / "no-weights"
    frames = tmp_path / "frames"
    frames.mkdir()
    image = write_image(frames / "0001.png")
    blocker = write_image(tmp_path / "blocker.png")
    target = blocker / (
        "out.mp4" if video and flag == "--render" else "out.png" if flag == "--render" else "o.json"
    )
    source = frames if video else image
    argv = ["predict", str(source), "--weights-dir", str(weights_dir), "--no-progress", *MODEL_OPTIONS]
    assert main([*argv, flag, str(target)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"error: cannot write {flag} {target}: {blocker} is a file, not a directory", err
    assert not any("Traceback" in line for line in err)
    if not video and flag == "--out":  # a directory where the JSON file goes
        assert main([*argv, "--out", str(frames)]) == 1
        assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: cannot write --out {frames}: ")


def test_call_cannot_write_its_out_file(recorder: HTTPServer, tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    assert main(["call", url, str(write_image(tmp_path / "f.png")), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: cannot write --out {tmp_path}: ")


def test_call_with_bad_inputs_is_one_line_naming_what_to_fix(
    recorder: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    image = str(write_image(tmp_path / "f.png"))
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    cases = [
        (["call", url, str(tmp_path / "missing.png")], 1, f"error: cannot read {tmp_path / 'missing.png'}: "),
        (["call", url, str(tmp_path)], 1, f"error: cannot read {tmp_path}: "),
        (["call", url, image, "--timeout", "0"], 2, "error: invalid --timeout 0.0: "),
        (["call", url, image, "--timeout", "nan"], 2, "error: invalid --timeout nan: "),
        (["call", url, image, "--timeout", "inf"], 2, "error: invalid --timeout inf: "),
        (
            ["call", url, str(notes), "--render", str(tmp_path / "r.png")],
            1,
            "error: --render: cannot draw on",
        ),
    ]
    for argv, status, start in cases:
        assert main(argv) == status, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(start), err
    monkeypatch.setattr(_Recorder, "answer", b"<html>a proxy's page</html>")
    assert main(["call", url, image]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {url} answered HTTP 200 without JSON"), err


@pytest.mark.parametrize("name", ["drawn.txt", "drawn", "dir"])
def test_call_refuses_a_render_it_cannot_write_before_posting(
    name: str, recorder: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--render takes an image file's name: another suffix (or none, or a directory) was OpenCV's traceback
    after the function had answered."""
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    (tmp_path / "dir").mkdir()
    target = tmp_path / name
    assert main(["call", url, str(write_image(tmp_path / "f.png")), "--render", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --render {target}: name an image file (.png, "), (
        err
    )
    assert _Recorder.requests == []


def test_a_missing_image_among_several_is_named_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was found when its turn came, after the model had loaded and the images before it had run, whose
    results were then lost (there are no weights here: a later check would report those)."""
    image, missing = str(write_image(tmp_path / "f.png")), tmp_path / "missing.png"
    argv = ["predict", image, str(missing), "--weights-dir", str(tmp_path / "no-weights"), *MODEL_OPTIONS]
    assert main(argv) == 1
    assert capsys.readouterr().err == f"error: cannot read {missing}: No such file or directory\n"


def test_outputs_are_checked_without_making_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that stops before it writes (here: no weights) leaves no directory of its --out or --render."""
    image = str(write_image(tmp_path / "f.png"))
    argv = ["predict", image, "--weights-dir", str(tmp_path / "no-weights"), *MODEL_OPTIONS]
    assert (
        main([*argv, "--out", str(tmp_path / "left" / "a" / "r.json"), "--render", str(tmp_path / "drawn")])
        == 2
    )
    assert "no-weights" in capsys.readouterr().err
    assert not (tmp_path / "left").exists() and not (tmp_path / "drawn").exists()


def test_a_reader_that_stops_early_ends_the_command_quietly(recorder: HTTPServer, tmp_path: Path) -> None:
    """``... | head -1``: the reader goes before the command has written its output. The command stops with
    status 1, as Python's own tools do, with no BrokenPipeError traceback, neither from the write nor
    from the flush at exit: its stderr holds only its summary line."""
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    image = write_image(tmp_path / "frame.png")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # as by default
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes
    with os.fdopen(write, "wb") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "tools", "call", url, str(image)],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert (result.returncode, result.stderr) == (1, f"{image}: 0 person(s)\n")


def test_call_refuses_an_address_that_is_no_http_url_before_reading_the_image(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``call localhost:32768 ...`` (no scheme) was requests' "No connection adapters were found", exit 1."""
    assert main(["call", "127.0.0.1:32768", "missing.png"]) == 2
    assert capsys.readouterr().err == (
        "error: invalid URL '127.0.0.1:32768': give the function's HTTP address, e.g. http://localhost:32768\n"
    )
