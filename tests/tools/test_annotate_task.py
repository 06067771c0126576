"""``python -m tools annotate-task``: a CVAT task's frames through the SDK to uploaded skeleton tracks.

The task lives on the stub CVAT server (tests/helpers/cvat_server_stub.py); the SDK reads its frames and sends
the tracks as its own request models. The pipeline and tracker are stand-ins (a scene of walking
persons whose identity each pose carries; each frame's image encodes its number), except in the slow
case, which runs the real pipeline on synthetic weights. What the server receives is checked through
what CVAT would show of it on every frame (tests/helpers/cvat_track_view.py).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cvat_sdk import Client, Config, models
from cvat_sdk.api_client import ApiClient
from cvat_server_stub import ImageTask, serve
from cvat_track_view import load_video_xml, shown
from PIL import Image
from repo_paths import TEST_DATA
from task_scene import (
    SKELETON,
    TASK,
    TEMPLATE,
    K,
    coco_labels,
    make_task,
    own_sdk_cache,
    person_points,
    present,
    scene_poses,
    scores,
)

import tools.annotate_task as annotate_task
from alphapose.cvat.predictor import Predictor
from alphapose.cvat.skeleton_tracks import build_tracks
from alphapose.pipeline import PosePipeline
from alphapose.pose.skeletons import Skeleton
from alphapose.structures import Pose
from alphapose.tracking import TrackedFrame
from tools.annotate_task import LocalPoses, TaskError, TaskLabels, annotate, open_task, upload_parts
from tools.cli import main
from tools.errors import CommandError

TOLERANCE = 1.0


class ScenePipeline:
    """The pipeline's interface over the scene: the frame number from the pixels, the persons there."""

    skeleton: Skeleton = SKELETON
    device = torch.device("cpu")  # one frame per forward, as the pipeline on a CPU
    frames = PosePipeline.frames  # which then calls the pipeline on each frame

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.seen: list[int] = []

    def __call__(self, image: np.ndarray) -> list[Pose]:
        frame = int(image[0, 0, 0])
        self.seen.append(frame)
        if frame == self.fail_on:
            raise RuntimeError(f"the model failed on frame {frame}")
        return scene_poses(frame, identity_as_score=True)


class IdentityTracker:
    """The tracker's interface: each pose's id is the person it was made for."""

    def track(
        self, frames: Iterable[tuple[int, Sequence[Pose]]], *, threshold: float
    ) -> Iterator[TrackedFrame]:
        for frame, poses in frames:
            yield TrackedFrame(frame, [(int(pose.score), pose) for pose in poses]).above(threshold)


def client(url: str, tmp_path: Path) -> Client:
    return Client(url, config=Config(cache_dir=tmp_path / "cache"))


def run(task: ImageTask, tmp_path: Path, **options: Any) -> list:
    with serve(task) as url:
        opened = open_task(client(url, tmp_path), TASK, SKELETON.keypoints)
        tracks, found_uploaded = annotate(
            opened,
            LocalPoses(Predictor(ScenePipeline())),
            IdentityTracker(),
            keypoint_threshold=0.4,
            tolerance=TOLERANCE,
            **options,
        )
    assert not found_uploaded  # there is no checkpoint, so no pending upload
    return tracks


def check_uploaded(tracks: list[dict[str, Any]], task: ImageTask, frames: Sequence[int]) -> None:
    """The tracks as the server receives them: labels, frames in the task's range, one element track
    per point with the skeleton's keyframes; and CVAT shows each person right on every frame."""
    (person,) = task.labels
    sublabels = [s["id"] for s in person["sublabels"]]
    assert len(tracks) == 2
    for track_id, track in zip((1, 2), tracks, strict=True):
        assert (track["label_id"], track["source"], track["group"]) == (person["id"], "auto", 0)
        keyframes = [s["frame"] for s in track["shapes"]]
        assert track["frame"] == keyframes[0] == min(keyframes)
        assert set(keyframes) <= set(frames)
        assert all(s["type"] == "skeleton" and s["points"] == [] for s in track["shapes"])
        assert [e["label_id"] for e in track["elements"]] == sublabels
        for element in track["elements"]:
            assert element["frame"] == track["frame"]
            assert [s["frame"] for s in element["shapes"]] == keyframes
            assert all(s["type"] == "points" and len(s["points"]) == 2 for s in element["shapes"])
        view = shown(track, len(task.images), sublabels)
        for frame in frames:
            if not present(track_id, frame):
                assert frame not in view, f"person {track_id} shown on frame {frame}"
                continue
            points, visible = view[frame]
            np.testing.assert_array_equal(visible, scores(track_id, frame) >= 0.4)
            error = np.linalg.norm(points - person_points(track_id, frame), axis=1)[visible].max()
            assert error <= TOLERANCE + 1e-3, f"person {track_id}, frame {frame}: {error:.2f} px off"


def test_tracks_are_appended_to_an_image_task(tmp_path: Path) -> None:
    task = make_task(12)
    tracks = run(task, tmp_path)
    assert task.unexpected == [] and task.replaced == []
    (upload,) = task.uploads
    assert upload.get("shapes", []) == [] and upload.get("tags", []) == []
    check_uploaded(upload["tracks"], task, range(12))
    first = upload["tracks"][0]
    assert first["shapes"][-1]["frame"] == 8 and first["shapes"][-1]["outside"]  # person 1 left at 8
    assert all(e["shapes"][-1]["outside"] for e in first["elements"])
    assert len(first["shapes"]) < 8  # it stood still from frame 6: thinned
    assert [t.track_id for t in tracks] == [1, 2]


def test_a_video_task_is_replaced_frame_by_frame_and_written_as_xml(tmp_path: Path) -> None:
    """A task made from a video, frames 100, 105, ... of it, frame 4 deleted: the SDK fetches single
    frames, never the deleted one; ``clear_existing`` puts the tracks in place of the task's
    annotations; the XML has the same tracks on the video's frame numbers."""
    task = make_task(
        12, original_chunk_type="video", start_frame=100, frame_filter="step=5", deleted_frames=[4]
    )
    xml = tmp_path / "tracks.xml"
    run(task, tmp_path, clear_existing=True, xml=xml)
    assert task.unexpected == [] and task.uploads == []
    active = [f for f in range(12) if f != 4]
    assert task.fetched_frames == active
    (replaced,) = task.replaced
    assert replaced["tags"] == [] and replaced["shapes"] == []
    check_uploaded(replaced["tracks"], task, active)
    loaded = load_video_xml(xml.read_bytes(), start_frame=100, step=5)
    assert len(loaded) == len(replaced["tracks"])
    for got, sent in zip(loaded, replaced["tracks"], strict=True):
        assert [(s["frame"], s["outside"]) for s in got["shapes"]] == [
            (s["frame"], s["outside"]) for s in sent["shapes"]
        ]
        assert [e["label"] for e in got["elements"]] == list(SKELETON.keypoints)
        for element, sent_element in zip(got["elements"], sent["elements"], strict=True):
            assert [(s["frame"], s["outside"]) for s in element["shapes"]] == [
                (s["frame"], s["outside"]) for s in sent_element["shapes"]
            ]
            np.testing.assert_allclose(
                [s["points"] for s in element["shapes"]],
                [s["points"] for s in sent_element["shapes"]],
                atol=0.005,
            )


def test_no_upload_writes_only_the_xml(tmp_path: Path) -> None:
    task = make_task(6)
    run(task, tmp_path, upload=False, xml=tmp_path / "tracks.xml")
    assert task.uploads == [] and task.replaced == []
    assert len(load_video_xml((tmp_path / "tracks.xml").read_bytes(), 0, 1)) == 2


def test_a_failure_on_a_frame_uploads_nothing(tmp_path: Path) -> None:
    task = make_task(10)
    with serve(task) as url:
        opened = open_task(client(url, tmp_path), TASK, SKELETON.keypoints)
        pipeline = ScenePipeline(fail_on=7)
        with pytest.raises(RuntimeError, match="frame 7"):
            estimator = LocalPoses(Predictor(pipeline))
            annotate(opened, estimator, IdentityTracker(), keypoint_threshold=0.4, xml=tmp_path / "x.xml")
    assert pipeline.seen == list(range(8))
    assert task.uploads == [] and task.replaced == []
    assert not (tmp_path / "x.xml").exists()


def without_point(name: str) -> list[dict[str, Any]]:
    labels = coco_labels()
    labels[0]["sublabels"] = [s for s in labels[0]["sublabels"] if s["name"] != name]
    return labels


def with_extra_point() -> list[dict[str, Any]]:
    labels = coco_labels()
    labels[0]["sublabels"].append(
        {"id": 999, "name": "tail", "type": "points", "attributes": [], "color": "#fff"}
    )
    return labels


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            make_task(3, [{**coco_labels()[0], "name": "car", "type": "rectangle", "sublabels": []}]),
            r"task 5 has no 'person' skeleton label \(its labels: car \(rectangle\)\)",
        ),
        (
            make_task(3, without_point("left_ankle")),
            r"task 5's 'person' skeleton lacks the preset's points left_ankle",
        ),
        (
            make_task(3, with_extra_point()),
            r"task 5's 'person' skeleton has points the preset does not have: tail",
        ),
        (make_task(0), r"task 5 has no frames: upload its video or images first"),
        (make_task(3, deleted_frames=[0, 1, 2]), r"task 5 has no frames left: all 3 are deleted"),
        (make_task(3, validation_mode="gt_pool"), r"task 5 validates with a ground-truth pool"),
    ],
    ids=["no person skeleton", "missing point", "extra point", "no frames", "all deleted", "gt pool"],
)
def test_a_task_that_cannot_take_the_tracks_is_refused_before_any_frame(
    task: ImageTask, message: str, tmp_path: Path
) -> None:
    with serve(task) as url, pytest.raises(TaskError, match=message):
        open_task(client(url, tmp_path), TASK, SKELETON.keypoints)
    assert task.uploads == [] and task.replaced == [] and task.fetched_frames == []


def test_command_line_errors_name_the_flag_or_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CVAT_ACCESS_TOKEN", raising=False)
    for name in ("ALPHAPOSE_PRESET", "ALPHAPOSE_KEYPOINT_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    assert main(["annotate-task", "5", "--no-upload"]) == 2
    assert "--no-upload writes nothing without --xml FILE" in capsys.readouterr().err
    assert main(["annotate-task", "5", "--tolerance", "-1"]) == 2
    assert "--tolerance -1.0: must be a number of pixels >= 0" in capsys.readouterr().err
    assert main(["annotate-task", "5", "--max-age", "-1"]) == 2
    assert "invalid --max-age -1: " in capsys.readouterr().err
    assert main(["annotate-task", "5", "--server-host", "http://127.0.0.1:9"]) == 2
    assert "no credentials: give --auth USER:PASSWORD or set CVAT_ACCESS_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    own_sdk_cache(monkeypatch, tmp_path / "cache")
    task = make_task(3, without_point("nose"))
    with serve(task) as url:
        assert main(["annotate-task", "5", "--server-host", url]) == 2
        assert "task 5's 'person' skeleton lacks the preset's points nose" in capsys.readouterr().err
        assert main(["annotate-task", "6", "--server-host", url]) == 2
        assert capsys.readouterr().err == (
            f"error: task 6: no such task on {url} (or none you can see); "
            "check the id: no task was annotated\n"
        )


def test_addresses_that_are_no_http_urls_are_one_line_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --server-host of another scheme was the CVAT SDK's traceback, and a --function-url that requests
    cannot post to one at the first frame, after the task was opened."""
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    own_sdk_cache(monkeypatch, tmp_path / "cache")
    assert main(["annotate-task", "5", "--server-host", "ftp://cvat.example"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: invalid --server-host 'ftp://cvat.example': "), err
    task = make_task(3)
    with serve(task) as url:
        for address in ("localhost:8080", "ftp://function.example", "http://"):
            argv = ["annotate-task", "5", "--server-host", url, "--function-url", address]
            assert main([*argv, "--checkpoint-dir", str(tmp_path)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(f"error: invalid --function-url {address!r}: "), (
                err
            )
    assert task.fetched_frames == []


def test_a_task_failure_reads_as_the_command_failing_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure that ends one task is printed by the same CommandError.report as the error that ends the
    command: the same line and status as main gives for it, and it changes when that report changes."""
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    own_sdk_cache(monkeypatch, tmp_path / "cache")
    argv = ["annotate-task", str(TASK), "--checkpoint-dir", str(tmp_path)]
    with serve(make_task(3, without_point("nose"))) as url:
        argv += ["--server-host", url]
        with pytest.raises(TaskError) as refused:
            open_task(client(url, tmp_path), TASK, SKELETON.keypoints)
        failure = CommandError(str(refused.value))
        assert main(argv) == failure.status
        of_the_task = capsys.readouterr().err

        def failing(*args: Any) -> list[int]:
            raise failure  # the same error, ending the command before any task

        with monkeypatch.context() as patched:
            patched.setattr(annotate_task, "_task_ids", failing)
            assert main(argv) == failure.status
        assert capsys.readouterr().err == of_the_task
        assert of_the_task.count("\n") == 1

        def reported(error: CommandError) -> int:
            print(f"reported: {error}", file=sys.stderr)
            return error.status

        monkeypatch.setattr(CommandError, "report", reported)
        assert main(argv) == failure.status
        assert capsys.readouterr().err == f"reported: {failure}\n"


@pytest.mark.slow
def test_command_end_to_end_on_synthetic_weights(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real pipeline (the synthetic detector finds one person covering the frame) and the real tracker
    over three frames of a photo: one track of 17 points uploaded, the XML written."""
    photo = (TEST_DATA / "astronaut.jpg").read_bytes()
    with Image.open(io.BytesIO(photo)) as image:
        size = image.size
    task = ImageTask(TASK, coco_labels(), [("a.jpg", photo)] * 3, [size] * 3)
    trackers = []
    make_tracker = annotate_task._tracker

    def recorded_tracker(skeleton: Any, options: Any) -> Any:
        trackers.append(options)
        return make_tracker(skeleton, options)

    own_sdk_cache(monkeypatch, tmp_path / "cache")
    monkeypatch.setattr(annotate_task, "_tracker", recorded_tracker)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    for name in ("ALPHAPOSE_PRESET", "ALPHAPOSE_KEYPOINT_THRESHOLD", "ALPHAPOSE_DETECTOR"):
        monkeypatch.delenv(name, raising=False)
    arguments = [
        "--checkpoint-dir",
        str(tmp_path),
        "--weights-dir",
        str(weights_dir),
        "--detector-size",
        "160",
        "--device",
        "cpu",
        "--max-age",
        "7",
    ]
    with serve(task) as url:
        status = main(
            ["annotate-task", "5", "--server-host", url, "--xml", str(tmp_path / "t.xml"), *arguments]
        )
    assert status == 0, capsys.readouterr().err
    assert task.unexpected == []
    (upload,) = task.uploads
    (track,) = upload["tracks"]
    assert len(track["elements"]) == K and track["frame"] == 0
    err = capsys.readouterr().err
    assert "1 track(s)" in err
    assert "synthetic random weights (written by tools.synthetic_weights)" in err  # uploaded, but said
    assert [options.max_age for options in trackers] == [7]  # the tracker flags reach the tracker
    assert len(load_video_xml((tmp_path / "t.xml").read_bytes(), 0, 1)) == 1


@pytest.mark.slow
def test_parts_hold_whole_tracks_or_pieces_of_them_within_the_part_size() -> None:
    """Persons of many lengths, in parts of many sizes: each part's body (as the SDK writes it, for a
    replacement, the larger) weighs at most the part size, the next part's first request would not have
    fitted, the pieces come in the tracks' order (a long track cut into several), each part says how
    many pieces came before it, and leaving out the first n pieces gives the same pieces after them."""

    def poses(frame: int) -> list[tuple[int, Pose]]:
        persons = []
        for person, (start, stop) in enumerate([(0, 3), (1, 40), (5, 9), (10, 12), (12, 30)], 1):
            if start <= frame < stop:
                centre = np.array([200 + 60 * np.cos(frame / (2 + person)), 150 + 7 * frame + 20 * person])
                points = (TEMPLATE + centre).astype(np.float32)
                box = np.array([*points.min(axis=0), *points.max(axis=0)], dtype=np.float32)
                persons.append((person, Pose(box, 0.9, points, np.full(K, 0.9, dtype=np.float32), 0.9)))
        return persons

    tracks = build_tracks([(f, poses(f)) for f in range(40)], K, keypoint_threshold=0.4, tolerance=1.0)
    labels = TaskLabels(person=1, points=tuple(range(2, 2 + K)))

    def weight(data: object) -> int:
        return len(json.dumps(ApiClient.sanitize_for_serialization(data)))

    whole_json = [ApiClient.sanitize_for_serialization(r) for r in upload_parts_of(tracks, labels, 10**9)]
    whole = [len(json.dumps(track)) for track in whole_json]
    assert len(whole) == len(tracks)
    for limit in np.linspace(min(whole) + 60, max(whole) + 3000, 7).astype(int).tolist():
        parts = list(upload_parts(tracks, labels, limit))
        bodies = [weight(models.LabeledDataRequest(tags=[], shapes=[], tracks=part)) for _, part in parts]
        assert max(bodies) <= limit, f"a part of {max(bodies)} bytes at {limit}"
        for body, (_, following) in zip(bodies, parts[1:], strict=False):
            assert body + 2 + weight(following[0]) > limit, f"a part left unfilled at {limit}"
        pieces = [ApiClient.sanitize_for_serialization(request) for _, part in parts for request in part]
        assert [first for first, _ in parts] == [
            sum(len(part) for _, part in parts[:i]) for i in range(len(parts))
        ]
        assert len(pieces) >= len(tracks) + (limit < max(whole))
        assert shown_by_frame(pieces, labels) == shown_by_frame(whole_json, labels)
        skip = len(pieces) // 2
        again = upload_parts_of(tracks, labels, limit, skip=skip)
        assert [ApiClient.sanitize_for_serialization(request) for request in again] == pieces[skip:]
    exact = weight(models.LabeledDataRequest(tags=[], shapes=[], tracks=[])) + sum(whole[:3]) + 2 * 2
    assert len(next(upload_parts(tracks, labels, exact))[1]) == 3  # the first three tracks share a part
    assert len(next(upload_parts(tracks, labels, exact - 1))[1]) == 2  # one byte less: two of them


def upload_parts_of(tracks: list, labels: TaskLabels, limit: int, skip: int = 0) -> list:
    return [request for _, part in upload_parts(tracks, labels, limit, skip=skip) for request in part]


def shown_by_frame(uploaded: list[dict[str, Any]], labels: TaskLabels) -> dict[int, list[tuple]]:
    """Per frame, what CVAT shows of the uploaded tracks: each skeleton's visible points."""
    views = [shown(track, 40, labels.points) for track in uploaded]
    return {
        frame: sorted(tuple(view[frame][0][view[frame][1]].ravel()) for view in views if frame in view)
        for frame in range(40)
    }


def test_persons_below_the_person_threshold_are_not_tracked(tmp_path: Path) -> None:
    task = make_task(4)
    assert run(task, tmp_path, threshold=0.95) == []  # the scene's boxes score 0.9
    assert task.uploads == [] and task.unexpected == []  # no track: nothing to append


def test_a_connection_lost_while_the_task_is_read_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from http.client import RemoteDisconnected

    from urllib3.exceptions import ProtocolError

    def dropped(*args: Any, **kwargs: Any) -> None:
        raise ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection"))

    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    monkeypatch.setattr(annotate_task, "open_task", dropped)
    with serve(make_task(3)) as url:
        assert main(["annotate-task", "5", "--server-host", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"error: task 5: cannot reach CVAT at {url}: the connection failed (Remote end closed"
    )


def test_an_xml_that_cannot_be_written_is_refused_before_any_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It is written only once the task's tracks are done: found then, hours of tracking were spent."""
    own_sdk_cache(monkeypatch, tmp_path / "cache")
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    task = make_task(2)
    for xml in (tmp_path, blocker / "t.xml"):
        with serve(task) as url:
            argv = ["annotate-task", "5", "--server-host", url, "--xml", str(xml)]
            assert main([*argv, "--checkpoint-dir", str(tmp_path), "--weights-dir", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: cannot write --xml {xml}: "), err
    assert task.uploads == []
