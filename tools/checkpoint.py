"""``annotate-task``'s checkpoint: each frame's poses on disk as soon as they are computed.

A long task that dies at frame 9,000 (a crash, Ctrl-C, a lost connection) keeps what was computed:
``--resume`` reads the frames done back and computes only the others. The file is evaluate's partial
results format (:class:`alphapose.evaluation.PartialResults`: a settings line, then one line per frame,
each flushed and synced), so a run with other settings, or for another task, is refused rather than
mixed in. It holds every pose the model gave, before any filtering, exactly (float32 values survive
JSON): tracking runs again over the frames read back, so the tracks equal those of a run that was
never interrupted. The file is deleted once the task's tracks are uploaded (or written), and a note
that the task is done takes its place until every task of the command is: resuming a command of
several tasks that stopped in its second leaves the first as it was uploaded, rather than annotating
it again (appending its tracks a second time). A note that the upload is pending is written before
each part of the tracks is sent: when its answer is lost (a timeout, a dropped connection, a proxy's
504 after CVAT applied it), the resumed run knows which parts are in the task and to look for that
one before appending it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from alphapose.evaluation import PartialResults, ResumeError
from alphapose.structures import Pose

RESUME_REMEDY = "delete it to start the task over"


class CheckpointError(Exception):
    """A checkpoint this run cannot use; the message names the file and says what to do."""


def checkpoint_path(directory: Path, task_id: int) -> Path:
    """Where the checkpoint of task ``task_id`` lives in ``directory`` (``--checkpoint-dir``)."""
    return directory / f"annotate-task-{task_id}.checkpoint.jsonl"


def done_path(path: Path) -> Path:
    """The note left in place of the checkpoint ``path`` once its task is done."""
    return path.with_name(path.name.removesuffix(".checkpoint.jsonl") + ".done.json")


def pending_path(path: Path) -> Path:
    """The note that the tracks of checkpoint ``path`` were sent and their answer is not yet in."""
    return path.with_name(path.name.removesuffix(".checkpoint.jsonl") + ".pending.json")


def _uploaded_to(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint's ``settings`` that says where its tracks go (server and task): all a
    pending note is about, since whether tracks landed does not depend on what made them."""
    return {key: settings.get(key) for key in ("server", "task")}


@dataclass(frozen=True)
class PendingPart:
    """A part of an append sent to CVAT, its answer not yet in: the first ``sent`` pieces of the tracks
    (:func:`tools.annotate_task.upload_parts`) are in the task, the next ``sending`` were sent when its
    highest track id was ``last_track_id``. ``tracks`` is the digest of what was cut into pieces (the
    resumed run's must be the same for the counts to mean the same pieces), ``before`` the task's
    highest track id before the first part. ``replacing``: the part replaces the task's annotations
    (``--clear-existing``); once it has, the parts counted are those of the replacement, not those a
    note of an earlier run counted."""

    tracks: str
    before: int
    sent: int
    sending: int
    last_track_id: int
    replacing: bool = False


def _pending(note: Path, settings: Mapping[str, Any]) -> PendingPart | None:
    """The part noted in flight to the server and task of ``settings``, else None; a
    :class:`CheckpointError` for a note of them this version cannot read."""
    try:
        pending = json.loads(note.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(pending, dict) or pending.get("task") != _uploaded_to(settings):
        return None
    try:
        return PendingPart(
            **{field.name: pending[field.name] for field in fields(PendingPart) if field.name in pending}
        )
    except TypeError:  # deleting it would send its tracks again
        last = pending.get("last_track_id")
        above = f" (automatic tracks numbered above {last})" if isinstance(last, int) else ""
        raise CheckpointError(
            f"{note} notes an upload whose answer was lost in a form this version does not read: the task "
            f"may hold the tracks it sent{above}; delete them in CVAT if so, and this file, then run again"
        ) from None


def _write_synced(path: Path, data: Any) -> None:
    """``data`` as JSON in ``path``, on disk before this returns, in place of what it held at once (a
    crash while writing leaves the file as it was: a pending note overwritten part after part must
    never lose the parts it had counted)."""
    written = _being_written(path)
    with written.open("w") as file:
        file.write(json.dumps(data) + "\n")
        file.flush()
        os.fsync(file.fileno())
    written.replace(path)


def _being_written(path: Path) -> Path:
    """Where :func:`_write_synced` writes ``path`` first (left behind by a crash while it wrote)."""
    return path.with_name(path.name + ".new")


def _unlink(path: Path) -> None:
    """Drop a note written by :func:`_write_synced`, and what a crash while writing it left."""
    path.unlink(missing_ok=True)
    _being_written(path).unlink(missing_ok=True)


def task_done(path: Path, settings: Mapping[str, Any]) -> bool:
    """Whether the run being resumed finished the task of checkpoint ``path`` with ``settings``."""
    try:
        return json.loads(done_path(path).read_text()) == json.loads(json.dumps(settings))
    except (FileNotFoundError, ValueError):
        return False


def forget_done(path: Path) -> None:
    """Drop the note that the task of checkpoint ``path`` is done: a new run, or every task is done."""
    _unlink(done_path(path))


def forget_checkpoint(path: Path) -> None:
    """Drop the checkpoint ``path`` and its pending note: its task is done."""
    path.unlink(missing_ok=True)
    _unlink(pending_path(path))


def left_behind(directory: Path, task_ids: Sequence[int]) -> list[Path]:
    """What an unfinished run of these tasks left in ``directory``: checkpoints holding frames, notes of
    uploads whose answer was lost and of tasks it finished (which a new run would annotate, and append
    to, a second time)."""
    paths = []
    for task_id in task_ids:
        path = checkpoint_path(directory, task_id)
        if path.is_file() and _holds_frames(path):
            paths.append(path)
        paths += [note for note in (pending_path(path), done_path(path)) if note.exists()]
    return paths


def _holds_frames(path: Path) -> bool:
    """Whether a checkpoint holds a frame's poses: a whole line after its settings line (one cut short
    by a crash is dropped when the file is read, as if never written)."""
    with path.open("rb") as file:
        file.readline()
        line = file.readline()
        return line.endswith(b"\n") and bool(line.strip())


def pose_record(pose: Pose) -> dict[str, Any]:
    """One pose as JSON, every number as computed."""
    return {
        "box": pose.box.tolist(),
        "box_score": float(pose.box_score),
        "keypoints": pose.keypoints.tolist(),
        "keypoint_scores": pose.keypoint_scores.tolist(),
        "score": float(pose.score),
    }


def pose_from_record(record: Mapping[str, Any]) -> Pose:
    """The pose :func:`pose_record` wrote, bit for bit."""
    return Pose(
        box=np.asarray(record["box"], dtype=np.float32),
        box_score=float(record["box_score"]),
        keypoints=np.asarray(record["keypoints"], dtype=np.float32).reshape(-1, 2),
        keypoint_scores=np.asarray(record["keypoint_scores"], dtype=np.float32),
        score=float(record["score"]),
    )


class TaskCheckpoint:
    """A task's checkpoint: ``done`` holds the poses of the frames the file held when opened, keyed by
    frame index; the frames added later are only written to the file (kept in memory as well, they
    would grow with the length of the video).

    ``settings`` says what made the poses and for which task (a rerun must give the same). Without
    ``resume`` an existing file is refused: it holds an interrupted run's work, which starting over
    would throw away; one that holds no frame (a run that stopped before its first) is replaced.
    ``pending``: the part of the tracks the run resumed sent last (:meth:`uploading`) without hearing
    back: it may be in the task already, numbered above the track id it notes (None: nothing pending).
    """

    def __init__(self, path: Path, settings: Mapping[str, Any], *, resume: bool) -> None:
        if path.is_dir():  # opening it would be an OSError naming neither the checkpoint nor what to do
            raise CheckpointError(f"{path} is a directory, not a checkpoint; {RESUME_REMEDY}")
        if path.exists() and not resume and not _holds_frames(path):
            path.unlink()
        if path.exists() and not resume:
            raise CheckpointError(
                f"{path} holds the frames of an interrupted run: pass --resume to continue it, "
                f"or {RESUME_REMEDY}"
            )
        # kept when the checkpoint is gone: whether the tracks landed does not depend on the frames
        self.pending = _pending(pending_path(path), settings) if resume else None
        if self.pending is None:  # a note of another server
            _unlink(pending_path(path))
        try:
            self._partial = PartialResults(path, settings, key="frame", remedy=RESUME_REMEDY)
        except ResumeError as exc:
            raise CheckpointError(str(exc)) from None
        self.path = path
        self.settings = dict(settings)
        self.done: dict[int, list[Pose]] = {
            int(frame): [pose_from_record(record) for record in records]
            for frame, records in self._partial.done.items()
        }
        self._partial.done.clear()  # read back as poses above

    def add(self, frame: int, poses: Sequence[Pose]) -> None:
        """Record a frame's poses (synced to disk before this returns)."""
        self._partial.add(frame, [pose_record(pose) for pose in poses])
        del self._partial.done[frame]

    def close(self) -> None:
        self._partial.close()

    def uploading(self, part: PendingPart) -> None:
        """``part`` is about to be sent: the pending note is on disk before it is."""
        _write_synced(pending_path(self.path), {"task": _uploaded_to(self.settings), **asdict(part)})

    def remove(self, *, done: bool = True) -> None:
        """The task is finished: its checkpoint and pending note go, and the note that it is done stays
        (:func:`task_done`) when ``done`` (its tracks were uploaded: ``--no-upload`` appends nothing that
        doing the task again would duplicate)."""
        self.close()
        if done:
            _write_synced(done_path(self.path), self.settings)
        forget_checkpoint(self.path)
