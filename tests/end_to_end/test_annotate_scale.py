"""``annotate-task`` at scale: the checkpoint and ``--resume``, the tracks uploaded in parts, frames sent
to a running function (``--function-url``, ``--concurrency``), several tasks per run, progress lines.

The tasks live on the stub CVAT server (tests/helpers/cvat_server_stub.py) and show the scene of
tests/tools/test_annotate_task.py (two walking persons; each frame's pixels say its number). The function is
a stub HTTP server in this process that answers as the real one does for ``format: coco`` (AlphaPose's
results of the scene's poses) and can refuse, stall or hold frames. The tracker is the real one. The
slow case compares ``python -m tools serve`` on synthetic weights with the same model loaded locally.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cvat_sdk
import numpy as np
import pytest
import torch
from cvat_server_stub import DROPPED, ImageTask, LostReply, serve
from cvat_track_view import shown
from PIL import Image
from repo_paths import REPO
from task_scene import (
    SKELETON,
    TASK,
    coco_labels,
    frame_image,
    make_task,
    own_sdk_cache,
    scene_poses,
)

import tools.annotate_task as annotate_task
import tools.remote as remote
from alphapose.cvat.formats import coco_results
from alphapose.cvat.request import decode_base64, decode_image
from alphapose.pipeline import PosePipeline
from alphapose.structures import Pose
from tools.annotate_task import Progress, duration
from tools.checkpoint import checkpoint_path, pending_path
from tools.cli import main
from tools.remote import FunctionError, RemoteFunction, RetryPolicy

ROOT = REPO
FAST_RETRY = RetryPolicy(attempts=3, first_pause=0.01, longest_pause=0.02)
CUT_SHORT = -1  # a refusal: an answer whose headers promise more than is sent before the connection closes


@dataclass
class StubFunction:
    """What the function saw and how it behaves: ``refuse`` maps a frame to the statuses of its first
    answers (or :data:`CUT_SHORT`); ``hold`` is a frame that waits for ``release`` before it is answered;
    ``delay`` is a pause before each answer."""

    refuse: dict[int, list[int]] = field(default_factory=dict)
    hold: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    delay: float = 0.0
    frames: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any]) -> tuple[int, Any]:
        frame = int(decode_image(decode_base64(body["image"]), max_pixels=10**8)[0, 0, 0])
        with self.lock:
            self.frames.append(frame)
            self.bodies.append({key: value for key, value in body.items() if key != "image"})
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            refusals = self.refuse.get(frame, [])
            status = refusals.pop(0) if refusals else 200
        try:
            if frame == self.hold:
                self.release.wait(60)
            time.sleep(self.delay * (1 + frame % 3))  # answers finish out of order
            if status not in (200, CUT_SHORT):
                return status, {"error": "busy", "detail": f"status {status} for frame {frame}"}
            return status, coco_results(scene_poses(frame), threshold=0.0, image_id=body.get("image_id", 0))
        finally:
            with self.lock:
                self.in_flight -= 1


@contextmanager
def serve_function(function: StubFunction) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # the headers and the body go in two writes on a kept-alive connection: with Nagle's algorithm,
        # the body would wait for the client's delayed acknowledgement of the headers, 40 ms a frame
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = function.answer(body)
            data = json.dumps(payload).encode()
            promised = len(data)
            if status == CUT_SHORT:  # a worker that dies while it answers
                status, promised, data, self.close_connection = 200, len(data), data[: len(data) // 2], True
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(promised))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        function.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A token, the SDK's cache under ``tmp_path`` (:func:`own_sdk_cache`), the default preset; the
    checkpoint directory."""
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    own_sdk_cache(monkeypatch, tmp_path / "cache")
    for name in [name for name in os.environ if name.startswith("ALPHAPOSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(remote, "DEFAULT_RETRY", FAST_RETRY)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    return checkpoints


def annotate_args(url: str, function_url: str, checkpoints: Path, *more: str) -> list[str]:
    return [
        "annotate-task",
        *more,
        "--server-host",
        url,
        "--function-url",
        function_url,
        "--checkpoint-dir",
        str(checkpoints),
        "--tolerance",
        "1",
    ]


def uploaded(task: ImageTask) -> list[dict[str, Any]]:
    (upload,) = task.uploads
    return upload["tracks"]


def test_remote_frames_come_back_in_order_with_n_in_flight_and_retries() -> None:
    function = StubFunction(refuse={2: [503, 408], 5: [503], 7: [CUT_SHORT]}, delay=0.01)
    images = [(i, Image.open(io.BytesIO(frame_image(i)))) for i in range(10)]
    with serve_function(function) as url:
        estimator = RemoteFunction(url, SKELETON, concurrency=4, retry=FAST_RETRY)
        answers = list(estimator.poses(iter(images)))
    assert function.most_in_flight == 4
    assert estimator.retries == 4
    assert sorted(function.frames) == sorted([*range(10), 2, 2, 5, 7])
    for frame, poses in enumerate(answers):
        expected = scene_poses(frame)
        assert len(poses) == len(expected)
        for got, want in zip(poses, expected, strict=True):
            np.testing.assert_array_equal(got.keypoints, want.keypoints)
            np.testing.assert_array_equal(got.keypoint_scores, want.keypoint_scores)
            np.testing.assert_array_equal(got.box, want.box)
            assert got.score == want.score and abs(got.box_score - 0.9) < 1e-6
    # As CVAT posts it, asking for AlphaPose's results and no threshold (the lowest).
    assert all(body == {"format": "coco", "image_id": body["image_id"]} for body in function.bodies)


def test_remote_gives_up_after_the_bound_and_names_the_frame() -> None:
    function = StubFunction(refuse={1: [503, 503, 503]})
    images = [(i, Image.open(io.BytesIO(frame_image(i)))) for i in range(3)]
    with serve_function(function) as url:
        estimator = RemoteFunction(url, SKELETON, retry=FAST_RETRY)
        with pytest.raises(FunctionError, match=r"frame 1: .* failed 3 times, last with HTTP 503 busy"):
            list(estimator.poses(iter(images)))
        function.refuse = {0: [400]}
        with pytest.raises(FunctionError, match=r"frame 0: .* answered HTTP 400 busy: status 400"):
            list(RemoteFunction(url, SKELETON, retry=FAST_RETRY).poses(iter(images)))
    with pytest.raises(FunctionError, match=r"frame 0: .* failed 3 times, last with no answer \(Connection"):
        list(RemoteFunction(url, SKELETON, retry=FAST_RETRY).poses(iter(images)))


def test_leaving_the_frames_early_does_not_wait_out_the_retries() -> None:
    """A Ctrl-C or a failure while a frame is being retried: the frames in flight stop retrying, so
    the command ends at once rather than after every pause of every try."""
    function = StubFunction(refuse={1: [503] * 5})
    images = [(i, Image.open(io.BytesIO(frame_image(i)))) for i in range(3)]
    slow = RetryPolicy(attempts=5, first_pause=2.0, longest_pause=2.0)
    with serve_function(function) as url:
        answers = RemoteFunction(url, SKELETON, concurrency=2, retry=slow).poses(iter(images))
        next(answers)
        while function.frames.count(1) < 1:
            time.sleep(0.01)
        started = time.monotonic()
        answers.close()
        assert time.monotonic() - started < 1.5
    assert function.frames.count(1) == 1


@pytest.mark.slow  # the command in a subprocess, killed and run again
def test_resume_after_a_kill_gives_the_tracks_of_an_uninterrupted_run(cli_env: Path, tmp_path: Path) -> None:
    """The command runs in a process killed while the function holds frame 7; the checkpoint then holds
    frames 0-6 (more may be in flight, none is written out of order), and ``--resume`` asks the function
    for the others only. The tracks uploaded equal those of a run never interrupted."""
    whole, resumed = make_task(12), make_task(12)
    with serve(whole) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    assert not checkpoint_path(cli_env, TASK).exists()  # removed once uploaded

    function = StubFunction(hold=7)
    checkpoint = checkpoint_path(cli_env, TASK)
    with serve(resumed) as url, serve_function(function) as function_url:
        args = [*annotate_args(url, function_url, cli_env, str(TASK)), "--concurrency", "2"]
        process = subprocess.Popen(
            [sys.executable, "-m", "tools", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while not (checkpoint.exists() and len(checkpoint.read_text().splitlines()) == 8):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the checkpoint never reached frame 6"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        assert resumed.uploads == []
        done = [json.loads(line)["frame"] for line in checkpoint.read_text().splitlines()[1:]]
        assert done == list(range(7))

        function.frames.clear()
        function.release.set()
        assert main([*args, "--resume"]) == 0
    assert sorted(function.frames) == list(range(7, 12))
    assert uploaded(resumed) == uploaded(whole)
    assert len(uploaded(whole)) == 2
    assert not checkpoint.exists()


def test_a_checkpoint_is_continued_only_with_resume_and_the_same_settings(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = make_task(6)
    function = StubFunction(refuse={3: [400]})
    with serve(task) as url, serve_function(function) as function_url:
        args = annotate_args(url, function_url, cli_env, str(TASK))
        assert main(args) == 1
        assert "task 5: frame 3: " in capsys.readouterr().err
        assert task.uploads == []  # all or nothing
        assert main(args) == 2  # the frames done are not thrown away silently
        assert "an unfinished run of these tasks left " in capsys.readouterr().err
        other = annotate_args(url, function_url + "/", cli_env, str(TASK))
        assert main([*other, "--resume"]) == 2
        err = capsys.readouterr().err
        assert "holds results of other settings (different: poses.function_url)" in err
        assert "delete it to start the task over" in err
        function.frames.clear()
        assert main([*args, "--resume"]) == 0
    assert function.frames == [3, 4, 5]
    assert len(uploaded(task)) == 2


def test_resuming_several_tasks_leaves_the_tasks_done_as_they_are(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Task 5 is uploaded, then task 6 stops on frame 3: rerunning the same command with ``--resume``
    continues task 6 and does not annotate task 5 a second time; once every task is done, the
    checkpoint directory is empty again."""
    first = make_task(6)
    second = ImageTask(6, coco_labels(), first.images, first.sizes)
    function = StubFunction(refuse={3: [200, 400]})  # task 5's frame 3 is answered, task 6's refused
    with serve(first, second) as url, serve_function(function) as function_url:
        args = annotate_args(url, function_url, cli_env, "5", "6")
        assert main(args) == 1
        assert len(first.uploads) == 1 and second.uploads == []
        other = annotate_args(url, function_url + "/", cli_env, "5", "6")  # other settings: refused
        assert main([*other, "--resume"]) == 2
        assert "task 5: the run resumed annotated it with other settings" in capsys.readouterr().err
        assert len(first.uploads) == 1
        function.frames.clear()
        assert main([*args, "--resume"]) == 0
        err = capsys.readouterr().err
        assert "task 5: already annotated" in err
        assert "uploaded to task 6; 6 frames (3 computed) in " in err  # the frames read back count once
    assert function.frames == [3, 4, 5]
    assert len(first.uploads) == 1
    assert uploaded(second) == uploaded(first)
    assert list(cli_env.iterdir()) == []


def auto_tracks(task: ImageTask) -> list[dict[str, Any]]:
    """The task's tracks as CVAT keeps them, of source ``auto``, without the ids CVAT gave them."""

    def bare(track: dict[str, Any]) -> dict[str, Any]:
        shapes = [{k: v for k, v in shape.items() if k != "id"} for shape in track["shapes"]]
        elements = [bare(element) for element in track.get("elements", [])]
        return {**{k: v for k, v in track.items() if k != "id"}, "shapes": shapes, "elements": elements}

    return [bare(track) for track in task.tracks if track["source"] == "auto"]


def manual_copy(task: ImageTask, track: dict[str, Any]) -> dict[str, Any]:
    """``track`` as an annotator's: of source ``manual``, which is none of the command's."""
    return task.kept({**track, "source": "manual"})


@pytest.mark.parametrize("lost", [LostReply(504), LostReply(DROPPED)], ids=["504", "dropped"])
def test_a_lost_answer_then_resume_leaves_one_copy_of_the_tracks(
    cli_env: Path, capsys: pytest.CaptureFixture[str], lost: LostReply
) -> None:
    """CVAT appends the tracks but its answer is lost; ``--resume`` finds them in the task (an annotator's
    copy of one does not count) and sends nothing again."""
    whole, task = make_task(6), make_task(6, lost_replies=[lost])
    with serve(whole) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    manual = manual_copy(task, uploaded(whole)[0])
    task.tracks = [manual]
    function = StubFunction()
    with serve(task) as url, serve_function(function) as function_url:
        args = annotate_args(url, function_url, cli_env, str(TASK))
        assert main(args) == 1
        assert f"task {TASK}" in capsys.readouterr().err
        assert len(task.uploads) == 1 and len(task.tracks) == 3  # applied, its answer lost
        assert pending_path(checkpoint_path(cli_env, TASK)).exists()
        function.frames.clear()
        assert main([*args, "--resume"]) == 0
        err = capsys.readouterr().err
    assert f"task {TASK}: 2 track(s)" in err and "found in task 5" in err and "not sent again" in err
    assert function.frames == []
    assert len(task.uploads) == 1
    assert task.tracks[0] == manual
    assert auto_tracks(task) == auto_tracks(whole) and len(auto_tracks(task)) == 2
    assert list(cli_env.iterdir()) == []


def test_a_pending_upload_cvat_never_got_is_sent_on_resume(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The upload's answer is lost before it reached CVAT (a proxy's 502): the failure says to resume, and
    ``--resume`` finds none of the tracks in the task and sends them."""
    whole, task = make_task(6), make_task(6, lost_replies=[LostReply(502, applied=False)])
    with serve(whole) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    task.tracks = [manual_copy(task, track) for track in uploaded(whole)]
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = annotate_args(url, function_url, cli_env, str(TASK))
        assert main(args) == 1
        err = capsys.readouterr().err.splitlines()
        assert "HTTP 502" in err[-2]  # and the way on:
        assert err[-1] == "the frames done are kept: --resume goes on from them"
        assert task.uploads == [] and auto_tracks(task) == []
        task.tracks.append(manual_copy(task, uploaded(whole)[0]))  # an annotator's, meanwhile
        assert main([*args, "--resume"]) == 0
        assert f"task {TASK}: 2 track(s), " in capsys.readouterr().err
    assert uploaded(task) == uploaded(whole)
    assert auto_tracks(task) == auto_tracks(whole) and len(task.tracks) == 5
    assert list(cli_env.iterdir()) == []


def test_a_pending_upload_is_found_in_the_tracks_as_cvat_reshapes_them(cli_env: Path) -> None:
    """CVAT keeps the tracks in its own shape (a track cut in two at a job boundary, an element's leading
    ``outside`` shapes dropped, ``semi-auto`` once edited): the applied upload is still found, by its
    tracks' ids above those the task held, and nothing is sent again."""
    task = make_task(6, lost_replies=[LostReply(504)])
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = annotate_args(url, function_url, cli_env, str(TASK))
        assert main(args) == 1
        first = task.tracks[0]
        cut = {**first, "frame": first["frame"] + 2, "shapes": first["shapes"][1:]}
        task.tracks = [first, cut, *[{**t, "elements": t["elements"][1:]} for t in task.tracks[1:]]]
        task.tracks = [{**t, "source": "semi-auto"} for t in task.tracks]  # as CVAT marks edited ones
        assert main([*args, "--resume"]) == 0
    assert len(task.uploads) == 1 and len(task.tracks) == 3
    assert list(cli_env.iterdir()) == []


def test_a_run_without_upload_leaves_no_task_done_for_a_run_that_uploads(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Task 5 is written to XML only, task 6 stops on frame 3: the uploading run that resumes it
    annotates and uploads task 5 too (nothing of it was appended before)."""
    first = make_task(6)
    second = ImageTask(6, coco_labels(), first.images, first.sizes)
    function = StubFunction(refuse={3: [200, 400]})
    with serve(first, second) as url, serve_function(function) as function_url:
        args = annotate_args(url, function_url, cli_env, "5", "6")
        assert main([*args, "--no-upload", "--xml", str(cli_env.parent / "xml")]) == 1
        assert not list(cli_env.glob("*.done.json"))
        assert main([*args, "--resume"]) == 0
        assert "already annotated" not in capsys.readouterr().err
    assert len(first.uploads) == 1 and len(second.uploads) == 1
    assert list(cli_env.iterdir()) == []


def test_a_checkpoint_dir_that_cannot_be_written_is_refused_before_any_task(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = cli_env.parent / "blocker"
    blocker.write_text("x")
    task = make_task(4)
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, blocker / "checkpoints", str(TASK))) == 1
    where = blocker / "checkpoints"
    assert capsys.readouterr().err == (
        f"error: cannot write --checkpoint-dir {where}: {blocker} is a file, not a directory\n"
    )
    assert task.uploads == []


def test_clear_existing_sends_again_after_a_lost_answer(cli_env: Path) -> None:
    """With ``--clear-existing`` a second request replaces the same tracks: it is sent without a look.
    (The SDK tries a PUT four times on a 504, a PATCH once.)"""
    task = make_task(6, lost_replies=[LostReply(504)] * 4)
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = [*annotate_args(url, function_url, cli_env, str(TASK)), "--clear-existing"]
        assert main(args) == 1
        assert len(task.replaced) == 4
        assert main([*args, "--resume"]) == 0
    assert len(task.replaced) == 5
    assert task.replaced[0] == task.replaced[-1] and len(task.replaced[0]["tracks"]) == 2
    assert len(task.tracks) == 2 and task.uploads == []
    assert list(cli_env.iterdir()) == []


PART = 25_000  # bytes: the scene's 30 frames go in three parts, the second person's track cut in two


def shown_persons(task: ImageTask) -> list[list[tuple]]:
    """Per frame, what CVAT shows of the task's automatic tracks: each skeleton's visible points."""
    (person,) = task.labels
    sublabels = [sublabel["id"] for sublabel in person["sublabels"]]
    views = [shown(track, len(task.images), sublabels) for track in task.tracks if track["source"] == "auto"]
    return [
        sorted(tuple(np.round(view[frame][0][view[frame][1]], 6).ravel()) for view in views if frame in view)
        for frame in range(len(task.images))
    ]


def test_a_long_upload_goes_in_parts_that_each_fit(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request of tracks weighs at most the part size and the next part's first track would not
    have fitted in it; a track heavier than a part is cut into tracks CVAT shows as the one, so the
    task shows what one request would have put there, and each part is said as it lands. With
    ``--clear-existing`` the first part replaces the task's annotations and the others are added."""
    whole, task, replaced = make_task(30), make_task(30), make_task(30)
    with serve(whole) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    assert [method for method, _ in whole.received] == ["PATCH"] and whole.received[0][1] > PART
    assert " part " not in capsys.readouterr().err  # one request: nothing to say of parts
    monkeypatch.setattr(annotate_task, "UPLOAD_PART_BYTES", PART)
    with serve(task, replaced) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
        said = [line for line in capsys.readouterr().err.splitlines() if " part " in line]
        assert said == [f"task {TASK}: part {n} of the tracks sent (pieces {n} to {n})" for n in (1, 2, 3)]
        replaced.task_id, replaced.tracks = TASK, [manual_copy(replaced, uploaded(whole)[0])]
    with serve(replaced) as url, serve_function(StubFunction()) as function_url:
        assert main([*annotate_args(url, function_url, cli_env, str(TASK)), "--clear-existing"]) == 0
    sizes = [size for _, size in task.received]
    assert len(sizes) == 3 and max(sizes) <= PART
    for size, following in zip(sizes, task.uploads[1:], strict=False):
        assert size + 2 + len(json.dumps(following["tracks"][0])) > PART
    assert [len(upload["tracks"]) for upload in task.uploads] == [1, 1, 1]
    assert shown_persons(task) == shown_persons(whole)
    assert [method for method, _ in replaced.received] == ["PUT", "PATCH", "PATCH"]
    assert [size for _, size in replaced.received][1:] == sizes[1:]
    assert auto_tracks(replaced) == auto_tracks(task) and len(replaced.tracks) == 3
    assert list(cli_env.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_a_lost_answer_to_a_part_then_resume_sends_only_the_parts_missing(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    """The answer to the second of three parts is lost, the part applied or not: ``--resume`` finds the
    first part (and the second where it was applied) in the task, sends only the others, and the task
    holds each track once, as an uninterrupted run leaves it."""
    monkeypatch.setattr(annotate_task, "UPLOAD_PART_BYTES", PART)
    whole, task = make_task(30), make_task(30, lost_replies=[None, LostReply(504, applied=applied)])
    with serve(whole) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = annotate_args(url, function_url, cli_env, str(TASK))
        assert main(args) == 1
        assert len(task.received) == 2 and len(task.uploads) == 1 + applied
        task.tracks.append(manual_copy(task, whole.uploads[0]["tracks"][0]))  # an annotator's, meanwhile
        assert main([*args, "--resume"]) == 0
    assert len(task.received) == 4 - applied
    assert task.uploads == whole.uploads
    assert auto_tracks(task) == auto_tracks(whole) and len(task.tracks) == 4
    assert list(cli_env.iterdir()) == []


def test_a_resume_after_a_replacement_stopped_in_its_parts_sends_the_parts_missing(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append stops at its second part; resumed with ``--clear-existing``, the replacement lands
    and the answer to the second part is lost, not applied; resumed again without the flag, the run
    sends the second and third parts, not only the third: the note of the first run, which counted
    the first append's parts, is not what the task holds after the replacement."""
    monkeypatch.setattr(annotate_task, "UPLOAD_PART_BYTES", PART)
    lost = LostReply(504, applied=False)
    whole, task = make_task(30), make_task(30, lost_replies=[None, lost, None, lost])
    with serve(whole) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = [*annotate_args(url, function_url, cli_env, str(TASK)), "--resume"]
        assert main(args[:-1]) == 1
        assert main([*args, "--clear-existing"]) == 1
        assert [method for method, _ in task.received] == ["PATCH", "PATCH", "PUT", "PATCH"]
        assert main(args) == 0
    assert shown_persons(task) == shown_persons(whole)
    assert auto_tracks(task) == auto_tracks(whole)
    assert list(cli_env.iterdir()) == []


@pytest.mark.slow
def test_an_append_resume_of_a_replacement_whose_answer_was_lost_is_refused(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replacement (``--clear-existing``) never reached the task, and the run is resumed without
    the flag: whether to add to what the task holds is not for the command to guess, so nothing is
    sent and the message says to resume with the flag; resumed with it, the task holds each track once."""
    monkeypatch.setattr(annotate_task, "UPLOAD_PART_BYTES", PART)
    whole, task = make_task(30), make_task(30, lost_replies=[LostReply(DROPPED, applied=False)] * 4)
    task.tracks = [manual_copy(task, {"label_id": task.labels[0]["id"], "frame": 0, "shapes": []})]
    with serve(whole) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = [*annotate_args(url, function_url, cli_env, str(TASK)), "--clear-existing"]
        assert main(args) == 1
        assert task.lost_replies == [] and task.received[-1][0] == "PUT"
        capsys.readouterr()
        assert main([*args[:-1], "--resume"]) == 2
        assert capsys.readouterr().err.endswith(
            f"error: task {TASK}: the run resumed was replacing the task's annotations (--clear-existing) "
            "and the replacement is not in the task: resume with --clear-existing\n"
        )
        assert task.uploads == []
        assert main([*args, "--resume"]) == 0
    assert auto_tracks(task) == auto_tracks(whole) and len(task.tracks) == 3


def test_a_resume_whose_tracks_differ_from_the_parts_sent_is_refused(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first part is in the task, the second's answer lost; the checkpoint is deleted and the
    resumed run, with another tolerance, makes other tracks: the pieces it counts are not those sent,
    so nothing is sent and the message says which tracks to delete."""
    monkeypatch.setattr(annotate_task, "UPLOAD_PART_BYTES", PART)
    task = make_task(30, lost_replies=[None, LostReply(504, applied=False)])
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = annotate_args(url, function_url, cli_env, str(TASK))
        assert main(args) == 1
        checkpoint_path(cli_env, TASK).unlink()
        capsys.readouterr()
        assert main([*args, "--resume", "--tolerance", "3"]) == 2
    assert len(task.uploads) == 1
    note = pending_path(checkpoint_path(cli_env, TASK))
    assert capsys.readouterr().err.endswith(
        f"error: task {TASK}: the run resumed appended part of its tracks (its automatic 'person' tracks "
        "numbered above 0) and this run's tracks differ (other settings, or its checkpoint was deleted): "
        f"delete those tracks in CVAT and {note}, then run again\n"
    )


def test_annotations_the_sdk_cannot_read_are_read_for_their_ids(cli_env: Path) -> None:
    """The task holds a track of a shape type this SDK's models lack (as a newer server's may), with a
    field they do not know: before appending, the command reads only the tracks' ids, labels and
    sources, and appends."""
    task = make_task(6)
    (person,) = task.labels
    shape = {"id": 2, "type": "polyline3d", "frame": 0, "points": [1.0, 2.0], "occluded": False}
    task.tracks = [
        {"id": 1, "label_id": person["id"], "frame": 0, "group": 0, "source": "manual", "shapes": [shape]}
        | {"attributes": [], "elements": [], "newer_field": True}
    ]
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 0
    assert len(uploaded(task)) == 2 and len(task.tracks) == 3


class IdlessTask(ImageTask):
    """A server whose answers, to ``GET .../annotations`` (``held``) or to an upload, hold tracks without
    their ids."""

    held: bool = False

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        status, payload = super().answer(method, path, query, body)
        if path.endswith("/annotations") and (method == "GET") == self.held:
            payload = {**payload, "tracks": [{"label_id": 40}]}
        return status, payload


@pytest.mark.parametrize("held", [True, False], ids=["annotations", "upload"])
def test_an_answer_without_track_ids_is_one_line_naming_the_task(
    cli_env: Path, capsys: pytest.CaptureFixture[str], held: bool
) -> None:
    """The task's annotations, or an upload's answer, hold no track ids: one line naming the task and
    what was answered; after an upload's, ``--resume`` finds the tracks it appended."""
    scene = make_task(6)
    task = IdlessTask(TASK, scene.labels, scene.images, scene.sizes)
    task.held = held
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        args = annotate_args(url, function_url, cli_env, str(TASK))
        assert main(args) == 1
        lines = capsys.readouterr().err.splitlines()
        err = lines[-1]
        if held:
            assert lines[-2:] == [
                f"error: task {TASK}: CVAT's answer to the request for the task's annotations holds no "
                "tracks with their ids; check that --server-host is CVAT's address",
                "the frames done are kept: --resume goes on from them",
            ]
            assert task.uploads == []
            return
        assert err == (
            f"error: task {TASK}: CVAT's answer to the upload of a part of the tracks (pieces 1 to 2) holds "
            "no tracks with their ids; run the same command with --resume, which looks in the task for what "
            "was applied"
        )
        assert main([*args, "--resume"]) == 0
        assert "found in task 5" in capsys.readouterr().err
    assert len(task.uploads) == 1 and len(task.tracks) == 2


class UnreadableTask(ImageTask):
    """A task whose description this SDK's models refuse (as a server of another version may give)."""

    def task(self) -> dict[str, Any]:
        return {**super().task(), "data_chunk_size": "many"}


def test_an_answer_the_sdk_cannot_read_is_one_line(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The SDK's models refuse the task's description: one line naming the task, or the server for a
    project's list of tasks, the SDK's version and what to install."""
    scene = make_task(4)
    task = UnreadableTask(TASK, scene.labels, scene.images, scene.sizes, project_id=7)
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        for which, name in ((str(TASK), f"task {TASK}: "), ("--project=7", "")):
            assert main(annotate_args(url, function_url, cli_env, which)) == 1
            err = capsys.readouterr().err
            assert err.startswith(
                f"error: {name}cvat-sdk {cvat_sdk.__version__} cannot read the answer of {url} (Invalid type "
                "for variable 'data_chunk_size'. Required value type is one of [NoneType, int] and passed "
                "type was str at ['received_data']"
            )
            assert err.endswith(
                "['data_chunk_size']); install the cvat-sdk release of the server's version (its "
                "/api/server/about names it)\n"
            )
            assert err.count("\n") == 1
    assert task.uploads == []


def test_a_checkpoint_of_another_task_is_refused(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = make_task(4)
    other = ImageTask(TASK + 1, coco_labels(), task.images, task.sizes)
    function = StubFunction(refuse={2: [400]})
    with serve(task, other) as url, serve_function(function) as function_url:
        assert main(annotate_args(url, function_url, cli_env, str(TASK))) == 1
        checkpoint_path(cli_env, TASK).rename(checkpoint_path(cli_env, TASK + 1))
        assert main([*annotate_args(url, function_url, cli_env, str(TASK + 1)), "--resume"]) == 2
    assert "(different: task); delete it to start the task over" in capsys.readouterr().err
    assert other.uploads == []


def test_several_tasks_one_failing_and_a_project(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_task(6)  # person 2, from frame 3 on, has the three frames a track needs to be kept
    broken = ImageTask(6, [{**coco_labels()[0], "sublabels": []}], good.images, good.sizes, project_id=3)
    third = ImageTask(7, coco_labels(), good.images, good.sizes, project_id=3)
    with serve(good, broken, third) as url, serve_function(StubFunction()) as function_url:
        xml = cli_env.parent / "xml"
        assert main([*annotate_args(url, function_url, cli_env, "5", "6", "7"), "--xml", str(xml)]) == 2
        err = capsys.readouterr().err
        assert sorted(p.name for p in xml.iterdir()) == ["task-5.xml", "task-7.xml"]
        assert "task 6: FAILED: task 6's 'person' skeleton lacks the preset's points" in err
        assert err.endswith(
            "2 of 3 tasks annotated\n"
            "run the same command with --resume to go on: the tasks done are left as they are\n"
        )
        assert uploaded(good) == uploaded(third) and len(uploaded(good)) == 2
        # task 7 is in the project: starting over would append its tracks a second time
        assert main(annotate_args(url, function_url, cli_env, "--project", "3")) == 2
        err = capsys.readouterr().err
        assert "an unfinished run of these tasks left " in err and "annotate-task-7.done.json" in err
        assert main([*annotate_args(url, function_url, cli_env, "--project", "3"), "--resume"]) == 2
        err = capsys.readouterr().err
        assert "task 7: already annotated" in err and "1 of 2 tasks annotated" in err
        assert len(third.uploads) == 1
        assert main(annotate_args(url, function_url, cli_env, "--project", "4")) == 2
        assert "--project 4: no tasks" in capsys.readouterr().err


def test_task_ids_cvat_lacks_are_refused_before_any_task(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped id among several stops the command before the first task is read, in one line naming
    it, with nothing to resume."""
    task = make_task(4)
    with serve(task) as url, serve_function(StubFunction()) as function_url:
        assert main(annotate_args(url, function_url, cli_env, "5", "99", "98")) == 2
    assert capsys.readouterr().err == (
        f"error: task 99, 98: no such task on {url} (or none you can see); "
        "check the ids: no task was annotated\n"
    )
    assert task.fetched_frames == [] and task.uploads == []
    assert list(cli_env.iterdir()) == []


class OtherPresetFunction(StubFunction):
    """A function deployed with another preset: each result has one keypoint fewer than the skeleton."""

    def answer(self, body: dict[str, Any]) -> tuple[int, Any]:
        status, results = super().answer(body)
        return status, [{**result, "keypoints": result["keypoints"][:-3]} for result in results]


def test_a_function_of_another_preset_stops_every_task_at_once(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No task could succeed and --resume would not mend it: one line, status 2, no advice to resume, no
    frame of the second task sent; a checkpoint without frames does not hold up the corrected command."""
    first, second = make_task(4), ImageTask(7, coco_labels(), make_task(4).images, make_task(4).sizes)
    wrong = OtherPresetFunction()
    with serve(first, second) as url:
        with serve_function(wrong) as function_url:
            assert main(annotate_args(url, function_url, cli_env, "5", "7")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: task 5: frame 0: the answer of ")
        assert (
            f"result 0 has {SKELETON.num_keypoints - 1} keypoints, the skeleton {SKELETON.num_keypoints}"
            in err
        )
        assert "resume" not in err
        assert wrong.frames == [0]
        with serve_function(StubFunction()) as function_url:
            assert main(annotate_args(url, function_url, cli_env, "5", "7")) == 0, capsys.readouterr().err
    assert len(first.uploads) == len(second.uploads) == 1


def test_several_tasks_load_the_local_model_once(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from alphapose.cvat.settings import Config

    loads = []

    class Scene:
        skeleton = SKELETON
        device = torch.device("cpu")
        frames = PosePipeline.frames

        def __call__(self, image: np.ndarray) -> list[Pose]:
            return scene_poses(int(image[0, 0, 0]))

    monkeypatch.setattr(Config, "load_pipeline", lambda self: loads.append(self) or Scene())
    first, second = make_task(4), ImageTask(6, coco_labels(), make_task(4).images, [(64, 48)] * 4)
    with serve(first, second) as url:
        args = ["annotate-task", "5", "6", "--server-host", url, "--checkpoint-dir", str(cli_env)]
        assert main(args) == 0, capsys.readouterr().err
    assert len(loads) == 1
    assert uploaded(first) == uploaded(second)
    err = capsys.readouterr().err
    assert "task 5: 4/4 frames" in err and "2 of 2 tasks annotated" in err


def test_concurrency_is_for_a_function(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotate-task", "5", "--concurrency", "4"]) == 2
    assert "--concurrency is for --function-url" in capsys.readouterr().err
    assert main(["annotate-task", "5", "--function-url", "http://x", "--concurrency", "0"]) == 2
    assert "--concurrency 0: must be at least 1" in capsys.readouterr().err
    assert main(["annotate-task"]) == 2
    assert "give TASK_ID... or --project ID" in capsys.readouterr().err


def test_progress_lines_say_frames_rate_and_time_left() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = Progress(5, 100, lines.append, interval=2.0, clock=lambda: now[0])
    progress.resumed(40, Path("c.jsonl"))
    for _ in range(40):  # the frames read back pass as task_poses gives them
        progress.frame(False)
    for _ in range(10):
        now[0] += 0.5
        progress.frame(True)
    assert lines == [
        "task 5: resuming c.jsonl: 40 of 100 frames done",
        "task 5: 44/100 frames, 2.00 frames/s, 28s left",
        "task 5: 48/100 frames, 2.00 frames/s, 26s left",
    ]
    now[0] += 100
    for _ in range(50):
        progress.frame(True)
    assert lines[-1] == "task 5: 100/100 frames, 0.57 frames/s"
    assert (duration(7), duration(187), duration(7500)) == ("7s", "3m 07s", "2h 05m")


@pytest.mark.slow
def test_function_url_gives_the_tracks_of_the_local_model(
    weights_dir: Path, tmp_path: Path, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real pipeline on synthetic weights: loaded here, and behind ``python -m tools serve`` with
    two workers, four frames in flight. Both upload the same tracks."""
    from nuclio_harness import server_env

    from tools.server.process import ServerProcess

    with Image.open(ROOT / "tests" / "data" / "astronaut.jpg") as photo:
        crops = [photo.convert("RGB").crop((16 * i, 8 * i, 16 * i + 256, 8 * i + 224)) for i in range(6)]
    images = []
    for number, crop in enumerate(crops):
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        images.append((f"frame_{number}.png", buffer.getvalue()))
    local = ImageTask(TASK, coco_labels(), images, [(256, 224)] * len(images))
    remote_task = ImageTask(TASK + 1, coco_labels(), images, [(256, 224)] * len(images))
    model = ["--weights-dir", str(weights_dir), "--detector-size", "160", "--device", "cpu"]
    with (
        ServerProcess(server_env(weights_dir), tmp_path / "server.log", "--workers", "2") as server,
        serve(local, remote_task) as url,
    ):
        assert server.url, server.log()
        args = ["--server-host", url, "--checkpoint-dir", str(cli_env)]
        assert main(["annotate-task", str(TASK), *args, *model]) == 0, capsys.readouterr().err
        remote_args = ["--function-url", server.url, "--concurrency", "4"]
        assert main(["annotate-task", str(TASK + 1), *args, *remote_args]) == 0, capsys.readouterr().err
    assert len(uploaded(local)) >= 1
    assert uploaded(remote_task) == uploaded(local)
