"""``annotate-task``'s checkpoint (tools/checkpoint.py) on its own: what it keeps in memory, its notes."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from alphapose.structures import Pose
from tools.checkpoint import CheckpointError, PendingPart, TaskCheckpoint, done_path, pending_path, task_done

K = 17


def pose(seed: int) -> Pose:
    rng = np.random.default_rng(seed)
    return Pose(
        box=rng.uniform(0, 500, 4).astype(np.float32),
        box_score=0.9,
        keypoints=rng.uniform(0, 500, (K, 2)).astype(np.float32),
        keypoint_scores=rng.uniform(0, 1, K).astype(np.float32),
        score=2.0,
    )


def test_frames_added_are_on_disk_not_in_memory(tmp_path: Path) -> None:
    """A long task's poses go to the file; holding them in memory as well would grow with the video
    (a few kB a pose) for nothing, since only the frames read back at the start are used."""
    path = tmp_path / "task.checkpoint.jsonl"
    poses = [pose(i) for i in range(10)]
    checkpoint = TaskCheckpoint(path, {"task": 1}, resume=False)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for frame in range(200):
            checkpoint.add(frame, poses)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        checkpoint.close()
    assert grown < 200_000, f"{grown} bytes held for 2000 poses written"
    resumed = TaskCheckpoint(path, {"task": 1}, resume=True)
    resumed.close()
    assert sorted(resumed.done) == list(range(200))
    np.testing.assert_array_equal(resumed.done[199][3].keypoints, poses[3].keypoints)


def part(sent: int, last_track_id: int) -> PendingPart:
    return PendingPart(tracks="digest", before=2, sent=sent, sending=3, last_track_id=last_track_id)


def test_the_pending_note_lives_from_the_upload_to_the_done_note(tmp_path: Path) -> None:
    """Written before each part of the tracks is sent, in place of the last part's, seen by a resumed run
    of the same server and task, also once the checkpoint is deleted (whether the tracks landed does not
    depend on the frames); the task done replaces it with the done note, a run that uploads nothing
    leaves no done note."""
    path = tmp_path / "annotate-task-5.checkpoint.jsonl"
    settings = {"server": "http://cvat", "task": 5, "poses": {"preset": "a"}}
    checkpoint = TaskCheckpoint(path, settings, resume=False)
    checkpoint.add(0, [pose(0)])
    assert checkpoint.pending is None
    checkpoint.uploading(part(0, 2))
    checkpoint.uploading(part(3, 9))
    checkpoint.close()
    assert pending_path(path).exists()
    resumed = TaskCheckpoint(path, settings, resume=True)
    assert resumed.pending == part(3, 9)
    resumed.close()

    path.unlink()  # "delete it to start the task over", with other poses
    again = TaskCheckpoint(path, {**settings, "poses": {"preset": "b"}}, resume=True)
    assert again.pending == part(3, 9)
    again.uploading(part(6, 12))
    again.remove()
    assert not pending_path(path).exists() and not path.exists()
    assert task_done(path, {**settings, "poses": {"preset": "b"}})

    done_path(path).unlink()
    elsewhere = TaskCheckpoint(path, settings, resume=False)
    elsewhere.uploading(part(0, 7))
    elsewhere.close()
    path.unlink()
    other_server = TaskCheckpoint(path, {**settings, "server": "http://other"}, resume=True)
    assert other_server.pending is None and not pending_path(path).exists()
    other_server.remove(done=False)
    assert not path.exists() and not done_path(path).exists()
    assert list(tmp_path.iterdir()) == []


def test_a_pending_note_this_version_cannot_read_is_refused_not_deleted(tmp_path: Path) -> None:
    """A note of this task's upload in a form this version does not read (as one written by a version that
    sent every track in one request): its tracks may be in the task, so deleting it would append them a
    second time; the resume is refused, the note kept, and the message names it and what to do."""
    path = tmp_path / "annotate-task-5.checkpoint.jsonl"
    settings = {"server": "http://cvat", "task": 5}
    pending_path(path).write_text(json.dumps({"task": settings, "last_track_id": 3}) + "\n")
    with pytest.raises(CheckpointError) as refused:
        TaskCheckpoint(path, settings, resume=True)
    assert str(refused.value) == (
        f"{pending_path(path)} notes an upload whose answer was lost in a form this version does not read: "
        "the task may hold the tracks it sent (automatic tracks numbered above 3); delete them in CVAT if "
        "so, and this file, then run again"
    )
    assert pending_path(path).exists()


def test_a_crash_while_the_pending_note_is_rewritten_leaves_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note of part 2 replaces that of part 1 whole or not at all: a crash while it is written must
    not lose the count of the parts in the task (a resume would send them again); what the crash left
    half written goes when the resumed run finishes the task."""
    path = tmp_path / "annotate-task-5.checkpoint.jsonl"
    settings = {"server": "http://cvat", "task": 5}
    checkpoint = TaskCheckpoint(path, settings, resume=False)
    checkpoint.uploading(part(0, 2))

    def crash(data: object) -> str:  # the process stops while the note is being written
        raise KeyboardInterrupt

    monkeypatch.setattr("tools.checkpoint.json.dumps", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.uploading(part(3, 9))
    checkpoint.close()
    monkeypatch.undo()
    resumed = TaskCheckpoint(path, settings, resume=True)
    assert resumed.pending == part(0, 2)
    resumed.remove()
    assert sorted(file.name for file in tmp_path.iterdir()) == [done_path(path).name]


def test_a_checkpoint_without_a_frame_is_replaced_by_a_new_run(tmp_path: Path) -> None:
    """A run that stopped before its first frame (the function answers another preset) left nothing to
    resume: the next run starts without --resume. One frame in it is work, refused without --resume."""
    path = tmp_path / "annotate-task-5.checkpoint.jsonl"
    TaskCheckpoint(path, {"task": 5}, resume=False).close()
    with path.open("a") as file:
        file.write('{"frame": 0, "res')  # a first frame cut short by a crash
    checkpoint = TaskCheckpoint(path, {"task": 5, "preset": "other"}, resume=False)
    checkpoint.add(0, [pose(0)])
    checkpoint.close()
    with pytest.raises(CheckpointError, match="holds the frames of an interrupted run"):
        TaskCheckpoint(path, {"task": 5, "preset": "other"}, resume=False)


def test_a_checkpoint_of_bytes_that_are_no_text_is_refused_naming_it(tmp_path: Path) -> None:
    """Resumed, such a file (a checkpoint overwritten by another program) was a UnicodeDecodeError's
    traceback; it is refused as any other file that is no checkpoint, with what to do."""
    path = tmp_path / "annotate-task-5.checkpoint.jsonl"
    path.write_bytes(b"\xff\xfe\x00\n\x80\n")
    with pytest.raises(CheckpointError, match=r"checkpoint\.jsonl is not a partial results file; delete it"):
        TaskCheckpoint(path, {"task": 5}, resume=True)
    assert path.exists()


@pytest.mark.parametrize("resume", [False, True])
def test_a_directory_in_the_checkpoints_place_is_refused_saying_what_to_do(
    resume: bool, tmp_path: Path
) -> None:
    """It was an OSError: annotate-task printed its words alone, then a line saying that frames were kept
    for --resume."""
    path = tmp_path / "annotate-task-5.checkpoint.jsonl"
    path.mkdir()
    with pytest.raises(CheckpointError) as refused:
        TaskCheckpoint(path, {"task": 5}, resume=resume)
    assert str(refused.value) == f"{path} is a directory, not a checkpoint; delete it to start the task over"
