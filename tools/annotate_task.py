"""``python -m tools annotate-task TASK_ID...``: CVAT tasks' frames to ``person`` skeleton tracks.

    python -m tools annotate-task TASK_ID... | --project ID --server-host URL [--auth USER:PASSWORD]
        [--function-url URL [--concurrency N]] [--resume] [--checkpoint-dir DIR]
        [--tolerance PX] [--threshold T] [--clear-existing] [--xml FILE|DIR] [--no-upload] [model options]

It reads each task's frames through the CVAT SDK as its auto-annotation driver does (``TaskDataset``,
frame indexes 0 to size - 1 without the deleted frames; chunks of images fetched as needed for a task
whose original chunks are image sets, single frames decoded by the server for a video task), finds the
persons on each frame, with the pipeline loaded here or with a running function (``--function-url``,
:mod:`tools.remote`), follows them with :class:`alphapose.tracking.PoseTracker`, builds the tracks with
thinned keyframes (:mod:`alphapose.cvat.skeleton_tracks`) and uploads them after the task's last frame,
in requests of at most :data:`UPLOAD_PART_BYTES`: appended to what the task holds, or, with
``--clear-existing`` (the SDK driver's name), replacing all of it. ``--xml`` also writes them as a CVAT
for video 1.1 file (:mod:`alphapose.cvat.video_xml`; a directory of ``task-ID.xml`` files for several
tasks); with ``--no-upload``, only that. Each task is checked before its first frame: it must have
frames and a ``person`` skeleton label whose points are exactly the preset's (as the SDK driver
requires of a function's skeleton).

Every frame's poses go to a checkpoint as they are computed (:mod:`tools.checkpoint`); after a crash or
Ctrl-C, ``--resume`` computes only the frames missing and leaves the tasks that run finished as they
are. A part of an append whose answer was lost (a timeout, a dropped connection, a proxy's 504) is
not sent twice: the resumed run reads the task's annotations and sends that part only if no automatic
track newer than those noted before it was sent is there, then the parts after it
(:func:`upload_tracks`). Several tasks (or all of a project's) share one model load; a task that fails
is reported and the others go on, unless no task could succeed (the model cannot load, the function
answers for another preset): that stops the command. The exit status is 0 when every task was
annotated; the task ids given are all checked to exist before the first is annotated. Credentials:
``--auth`` or a personal access token in ``CVAT_ACCESS_TOKEN``, as cvat-cli takes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alphapose.cvat.skeleton_tracks import DEFAULT_TOLERANCE, SkeletonTrack, build_tracks, can_cut, cut_track
from alphapose.cvat.spec import PERSON_LABEL
from alphapose.cvat.video_xml import TaskFrames, write_video_xml
from tools.checkpoint import (
    PendingPart,
    TaskCheckpoint,
    checkpoint_path,
    done_path,
    forget_checkpoint,
    forget_done,
    left_behind,
    pending_path,
    task_done,
)

if TYPE_CHECKING:
    from cvat_sdk import Client, models
    from cvat_sdk.core.proxies.tasks import Task
    from cvat_sdk.datasets import TaskDataset

    from alphapose.cvat.predictor import Predictor
    from alphapose.pose.skeletons import Skeleton
    from alphapose.structures import Pose
    from alphapose.tracking import TrackerOptions

PROGRESS_INTERVAL = 2.0  # seconds between progress lines


UPLOAD_PART_BYTES = 16 * 2**20
"""The most the JSON body of one request of tracks may weigh. CVAT's server refuses a body over
Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 100 MiB in ``cvat/settings/base.py``, which Django REST
framework applies to JSON bodies from 3.17.2 (CVAT requires ``~=3.17``); a long video's tracks weigh
more (docs/tracking.md). A smaller part also leaves room under proxies' time limits and keeps the
SDK's request models of one part, not of the whole task, in memory."""

AUTOMATIC_SOURCES = ("auto", "semi-auto")
"""CVAT's ``source`` of the tracks the command uploads (``auto``), and of those once an annotator edited
them (cvat-core's ``computeNewSource``)."""


class TaskError(Exception):
    """A task this command cannot annotate; the message names the task and says what to change."""


class AnswerError(Exception):
    """CVAT answered with what this command cannot read; the message says what and what to do."""


class Tracker(Protocol):
    """What the command needs of :class:`alphapose.tracking.PoseTracker`: each frame's poses in,
    the settled frames with their persons' track ids out, persons under ``threshold`` left out after
    tracking."""

    def track(self, frames: Iterable[tuple[Any, Sequence[Pose]]], *, threshold: float) -> Iterator[Any]: ...


class Estimator(Protocol):
    """Where the poses come from: :class:`LocalPoses` or :class:`tools.remote.RemoteFunction`."""

    skeleton: Skeleton

    def poses(self, frames: Iterable[tuple[int, Any]]) -> Iterator[list[Pose]]:
        """The poses of each ``(frame index, PIL image)``, in order."""
        ...


class LocalPoses:
    """The model loaded in this process: frames go through :meth:`Predictor.poses`, the detector
    batching them as for ``predict``'s videos (the device's frame batch)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.skeleton = predictor.skeleton

    def poses(self, frames: Iterable[tuple[int, Any]]) -> Iterator[list[Pose]]:
        from alphapose.images.decode import to_rgb

        return self.predictor.poses(to_rgb(image) for _, image in frames)


class Progress:
    """Progress lines of one task on ``log``: frames done, frames per second over the frames computed
    in this run (a resumed run's frames read back cost nothing) and the time left, every
    ``interval`` seconds and at the end."""

    def __init__(
        self,
        task_id: int,
        total: int,
        log: Callable[[str], None],
        *,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.task_id, self.total, self.log = task_id, total, log
        self.interval, self.clock = interval, clock
        self.done = self.computed = 0
        self.started = self.last = clock()

    def resumed(self, frames: int, path: Path) -> None:
        """Say that ``frames`` are read back; each is counted as it passes (:meth:`frame`)."""
        self.log(f"task {self.task_id}: resuming {path}: {frames} of {self.total} frames done")

    def frame(self, computed: bool) -> None:
        self.done += 1
        self.computed += computed
        now = self.clock()
        if now - self.last >= self.interval or self.done == self.total:
            self.last = now
            self.log(self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.started
        text = f"task {self.task_id}: {self.done}/{self.total} frames"
        if self.computed and elapsed > 0:
            rate = self.computed / elapsed
            text += f", {rate:.2f} frames/s"
            if self.done < self.total:
                text += f", {duration((self.total - self.done) / rate)} left"
        return text


def duration(seconds: float) -> str:
    """``2h 05m``, ``3m 07s``, ``12s``: a human's reading of a duration."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


@dataclass(frozen=True)
class TaskLabels:
    """The task's ids of the ``person`` skeleton and of its points, in the skeleton's keypoint order."""

    person: int
    points: tuple[int, ...]


@dataclass
class OpenedTask:
    """A task checked for annotation: its SDK proxy, label ids, frame numbering, and its frames."""

    task: Task
    labels: TaskLabels
    frames: TaskFrames
    dataset: TaskDataset


def task_labels(task_id: int, labels: Sequence[models.ILabel], keypoints: Sequence[str]) -> TaskLabels:
    """The ids of the task's ``person`` skeleton and its points; an error naming the task when it has
    no such label or its points are not the preset's."""
    people = [label for label in labels if label.name == PERSON_LABEL]
    skeletons = [label for label in people if label.type == "skeleton"]
    if not skeletons:
        found = ", ".join(f"{label.name} ({label.type})" for label in labels) or "none"
        raise TaskError(
            f"task {task_id} has no '{PERSON_LABEL}' skeleton label (its labels: {found}); add one with the "
            "preset's points, e.g. from the Nuclio function's label spec"
        )
    (person,) = skeletons
    points = {sublabel.name: sublabel for sublabel in person.sublabels}
    missing = [name for name in keypoints if name not in points]
    extra = [name for name in points if name not in keypoints]
    wrong = [name for name in keypoints if name in points and points[name].type != "points"]
    if missing or extra or wrong:
        problems = []
        if missing:
            problems.append(f"lacks the preset's points {', '.join(missing)}")
        if extra:
            problems.append(f"has points the preset does not have: {', '.join(extra)}")
        if wrong:
            problems.append(f"has non-point elements {', '.join(wrong)}")
        raise TaskError(
            f"task {task_id}'s '{PERSON_LABEL}' skeleton {'; '.join(problems)}; its points must be the "
            f"preset's {len(keypoints)} keypoints (choose the matching --preset or fix the label)"
        )
    return TaskLabels(person.id, tuple(points[name].id for name in keypoints))


def open_task(client: Client, task_id: int, keypoints: Sequence[str]) -> OpenedTask:
    """The task ``task_id``, checked: 2D, with frames, tracks allowed, and a matching ``person`` label."""
    from cvat_sdk.datasets import MediaDownloadPolicy, TaskDataset

    task = client.tasks.retrieve(task_id)
    if task.dimension != "2d":
        raise TaskError(f"task {task_id} is a {task.dimension} task; this command annotates 2D frames")
    if not task.size or not task.data_chunk_size:
        raise TaskError(f"task {task_id} has no frames: upload its video or images first")
    if task.validation_mode == "gt_pool":
        raise TaskError(
            f"task {task_id} validates with a ground-truth pool, where CVAT refuses tracks; "
            "use a task without one"
        )
    labels = task_labels(task_id, task.get_labels(), keypoints)
    meta = task.get_meta()
    frames = TaskFrames(
        task_id=task_id,
        name=task.name,
        size=meta.size,
        start_frame=meta.start_frame,
        stop_frame=meta.stop_frame,
        frame_filter=meta.frame_filter,
        width=meta.frames[0].width,
        height=meta.frames[0].height,
    )
    # Image-set chunks are fetched as the frames need them; a video's chunks hold a video stream,
    # which the SDK cannot cut, so its frames come one by one, decoded by the server.
    policy = (
        MediaDownloadPolicy.FETCH_CHUNKS_ON_DEMAND
        if task.data_original_chunk_type == "imageset"
        else MediaDownloadPolicy.FETCH_FRAMES_ON_DEMAND
    )
    dataset = TaskDataset(client, task_id, load_annotations=False, media_download_policy=policy)
    if not dataset.samples:
        raise TaskError(f"task {task_id} has no frames left: all {task.size} are deleted")
    return OpenedTask(task, labels, frames, dataset)


def task_poses(
    opened: OpenedTask,
    estimator: Estimator,
    checkpoint: TaskCheckpoint | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[int, list[Pose]]]:
    """Each of the task's frames, in order, with every pose found on it: read back from ``checkpoint``
    for the frames it holds, else computed by ``estimator`` (the frames' images are read only for
    these) and added to ``checkpoint``."""
    done = {} if checkpoint is None else checkpoint.done
    if progress is not None and checkpoint is not None and done:
        progress.resumed(len(done), checkpoint.path)
    with opened.dataset.iter_samples(temporary_chunks=True) as samples:
        # The images are loaded as the estimator asks for them: before the SDK moves to the next
        # chunk, which it deletes from disk.
        images = ((s.frame_index, s.media.load_image()) for s in samples if s.frame_index not in done)
        computed = estimator.poses(images)
        for sample in opened.dataset.samples:
            frame = sample.frame_index
            fresh = frame not in done
            poses = next(computed) if fresh else done[frame]
            if fresh and checkpoint is not None:
                checkpoint.add(frame, poses)
            yield frame, poses
            if progress is not None:
                progress.frame(fresh)
        computed.close()


def _shape(kind: str, frame: int, points: list[float], outside: bool) -> models.TrackedShapeRequest:
    from cvat_sdk import models

    return models.TrackedShapeRequest(
        type=models.ShapeType(kind),
        frame=frame,
        points=points,
        outside=outside,
        occluded=False,
        z_order=0,
        rotation=0.0,
        attributes=[],
    )


def track_request(track: SkeletonTrack, labels: TaskLabels) -> models.LabeledTrackRequest:
    """The track as the SDK's request model: a skeleton track, and an element track per point that CVAT
    keeps (:meth:`SkeletonTrack.point_keyframes`; see :mod:`alphapose.cvat.skeleton_tracks`)."""
    from cvat_sdk import models

    return models.LabeledTrackRequest(
        label_id=labels.person,
        frame=track.frame,
        group=0,
        source="auto",
        attributes=[],
        shapes=[_shape("skeleton", k.frame, [], k.outside) for k in track.keyframes],
        elements=[
            models.SubLabeledTrackRequest(
                label_id=point_id,
                frame=track.frame,
                group=0,
                source="auto",
                attributes=[],
                shapes=[_shape("points", k.frame, list(k.point), k.outside) for k in keyframes],
            )
            for point_id, keyframes in zip(
                labels.points, map(track.point_keyframes, range(len(labels.points))), strict=True
            )
            if keyframes
        ],
    )


def request_size(data: Any) -> int:
    """The bytes of ``data`` (SDK models, or lists of them) in a request's body, as the SDK writes it."""
    from cvat_sdk.api_client import ApiClient

    return len(json.dumps(ApiClient.sanitize_for_serialization(data)).encode())


def upload_parts(
    tracks: Iterable[SkeletonTrack], labels: TaskLabels, limit: int, *, skip: int = 0
) -> Iterator[tuple[int, list[models.LabeledTrackRequest]]]:
    """The tracks' requests in parts whose body (as a replacement's, which also holds empty ``tags`` and
    ``shapes``) weighs at most ``limit`` bytes, in order, each with the number of pieces before it. A
    track heavier than a part goes as pieces cut from it (:func:`cut_track`: CVAT shows them as the
    one), each piece in one part; the same tracks give the same pieces on every run, so a resumed run
    leaves out the first ``skip``, which are in the task."""
    from cvat_sdk import models

    envelope = request_size(models.LabeledDataRequest(tags=[], shapes=[], tracks=[]))
    part: list[models.LabeledTrackRequest] = []
    weight, first = envelope, skip
    pieces = (piece for track in tracks for piece in _pieces(track, labels, limit - envelope))
    for index, (request, size) in enumerate(pieces):
        if index < skip:
            continue
        if part and weight + 2 + size > limit:  # ", " before each request after the first
            yield first, part
            part, weight, first = [], envelope, index
        weight += size + 2 * bool(part)
        part.append(request)
    if part:
        yield first, part


def _pieces(
    track: SkeletonTrack, labels: TaskLabels, budget: int
) -> Iterator[tuple[models.LabeledTrackRequest, int]]:
    """The request of ``track`` and its size, or those of the pieces cut from it where it weighs more
    than ``budget`` bytes: cut in the middle, again while a piece is too heavy. A track whose shapes
    would be too heavy even at the smallest size a shape can have is cut without building its models."""
    if _least_size(track, len(labels.points)) <= budget:
        request = track_request(track, labels)
        size = request_size(request)
        if size <= budget:
            yield request, size
            return
    middle = len(track.keyframes) // 2
    cuts = sorted(range(len(track.keyframes)), key=lambda index: abs(index - middle))
    index = next((index for index in cuts if can_cut(track, index)), None)
    if index is None:
        raise ValueError(
            f"a track of {len(track.keyframes)} keyframe(s) weighs more than a request may ({budget})"
        )
    for piece in cut_track(track, index):
        yield from _pieces(piece, labels, budget)


def _least_size(track: SkeletonTrack, points: int) -> int:
    """A lower bound of the bytes of ``track``'s request: its shapes at the size of the smallest shape
    with the separator before it."""
    shapes = len(track.keyframes) + sum(len(track.point_keyframes(index)) for index in range(points))
    return shapes * (_smallest_shape() + 2)


@cache
def _smallest_shape() -> int:
    """The bytes of the smallest shape a request can hold: a skeleton's, on frame 0, outside."""
    return request_size(_shape("skeleton", 0, [], True))


def tracks_digest(tracks: Sequence[SkeletonTrack], labels: TaskLabels) -> str:
    """A name of what :func:`upload_parts` cuts into pieces: the tracks, the task's label ids and the
    part size; a resumed run counts the same pieces only where all three are the same."""
    digest = hashlib.sha256(repr((UPLOAD_PART_BYTES, labels)).encode())
    for track in tracks:
        digest.update(repr(track).encode())
    return digest.hexdigest()


def upload_tracks(
    opened: OpenedTask,
    tracks: Sequence[SkeletonTrack],
    *,
    clear_existing: bool,
    checkpoint: TaskCheckpoint | None = None,
    log: Callable[[str], None] | None = None,
) -> bool:
    """The tracks in parts (:func:`upload_parts`), the first replacing the task's annotations
    (``clear_existing``, as the SDK driver does it: tags, shapes and tracks) and the others added to
    them, or all added. Before each part is sent, ``checkpoint`` notes the pieces in the task and in the
    part, whether it replaces, and the task's highest track id (the previous part's answer says it), so
    that a note never counts pieces a replacement has since removed. When the run resumed left such a
    note and this one appends (a replacement starts again from the first part), a ``person`` track
    made automatically (``auto``, or ``semi-auto`` once an annotator edited it) with a higher id is the
    lost answer's part, applied (CVAT applies a request whole and numbers new tracks upwards): the
    parts after it are sent, else that part and those after it; a replacement not found is refused,
    since adding to what the task held before it is not what was asked. Found by id rather than
    compared: CVAT reshapes the tracks it keeps (an element's leading ``outside`` shapes, tracks cut at
    job boundaries), annotators edit them. True when every part was found in the task and nothing was
    sent. An upload of several parts says each one on ``log``: building and sending a long video's
    tracks takes minutes."""
    task, labels = opened.task, opened.labels
    if checkpoint is None:
        replace = clear_existing
        for number, (first, part) in enumerate(upload_parts(tracks, labels, UPLOAD_PART_BYTES), 1):
            _send(task, part, replace=replace, what="the tracks")
            _say_part(log, task.id, number, first, len(part), len(tracks))
            replace = False
        if replace:  # no track: the annotations are still replaced
            _send(task, [], replace=True, what="the tracks")
        return False
    _, response = task.api.retrieve_annotations(task.id, _parse_response=False)
    held = _answer_tracks(
        response.data, "the request for the task's annotations", "check that --server-host is CVAT's address"
    )
    highest = max((track["id"] for track in held), default=0)
    digest = tracks_digest(tracks, labels)
    before, start = highest, 0
    pending = checkpoint.pending
    if pending is not None and not clear_existing:  # a replacement starts again from the first part
        landed = any(
            track["id"] > pending.last_track_id
            and track["label_id"] == labels.person
            and track.get("source") in AUTOMATIC_SOURCES
            for track in held
        )
        if pending.replacing and not landed:
            raise TaskError(
                f"task {task.id}: the run resumed was replacing the task's annotations (--clear-existing) "
                "and the replacement is not in the task: resume with --clear-existing"
            )
        start = pending.sent + pending.sending * landed
        if start and pending.tracks != digest:
            raise TaskError(
                f"task {task.id}: the run resumed appended part of its tracks (its automatic "
                f"'{PERSON_LABEL}' tracks numbered above {pending.before}) and this run's tracks differ "
                "(other settings, or its checkpoint was deleted): delete those tracks in CVAT and "
                f"{pending_path(checkpoint.path)}, then run again"
            )
        before = pending.before if start else highest
    replace, sent = clear_existing, 0
    for first, part in upload_parts(tracks, labels, UPLOAD_PART_BYTES, skip=start):
        checkpoint.uploading(PendingPart(digest, before, first, len(part), highest, replacing=replace))
        answer = _send(
            task,
            part,
            replace=replace,
            what=f"a part of the tracks (pieces {first + 1} to {first + len(part)})",
        )
        highest = max([highest, *(track["id"] for track in answer)])
        replace, sent = False, sent + 1
        _say_part(log, task.id, sent, first, len(part), len(tracks))
    if replace:  # no track: the annotations are still replaced
        _send(task, [], replace=True, what="the tracks")
    return start > 0 and sent == 0


def _say_part(
    log: Callable[[str], None] | None, task_id: int, number: int, first: int, pieces: int, tracks: int
) -> None:
    """Say on ``log`` that part ``number`` of this run's upload is in the task, when the upload has
    several parts (a later one, or one with tracks after it)."""
    if log is not None and (number > 1 or first + pieces < tracks):
        log(f"task {task_id}: part {number} of the tracks sent (pieces {first + 1} to {first + pieces})")


def _send(
    task: Task, part: list[models.LabeledTrackRequest], *, replace: bool, what: str
) -> list[dict[str, Any]]:
    """One request of tracks, replacing the task's annotations or added to them; the tracks of CVAT's
    answer, which hold the ids it gave them (read as JSON: the SDK's models are not needed for them)."""
    from cvat_sdk import models

    if replace:
        data = models.LabeledDataRequest(tags=[], shapes=[], tracks=part)
        _, response = task.api.update_annotations(task.id, labeled_data_request=data, _parse_response=False)
    else:
        _, response = task.api.partial_update_annotations(
            "create",
            task.id,
            patched_labeled_data_request=models.PatchedLabeledDataRequest(tracks=part),
            _parse_response=False,
        )
    return _answer_tracks(
        response.data,
        f"the upload of {what}",
        "run the same command with --resume, which looks in the task for what was applied",
    )


def _answer_tracks(data: bytes, what: str, remedy: str) -> list[dict[str, Any]]:
    """The ``tracks`` of CVAT's annotations as JSON, each with its integer ``id`` and ``label_id``; an
    :class:`AnswerError` naming ``what`` was answered, and saying ``remedy``, when they are not there."""
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise AnswerError(f"CVAT's answer to {what} is not JSON ({exc}); {remedy}") from None
    tracks = answer.get("tracks") if isinstance(answer, dict) else None
    if not isinstance(tracks, list) or not all(
        isinstance(track, dict) and type(track.get("id")) is int and type(track.get("label_id")) is int
        for track in tracks
    ):
        raise AnswerError(f"CVAT's answer to {what} holds no tracks with their ids; {remedy}")
    return tracks


def annotate(
    opened: OpenedTask,
    estimator: Estimator,
    tracker: Tracker,
    *,
    keypoint_threshold: float | Sequence[float],
    tolerance: float = DEFAULT_TOLERANCE,
    threshold: float = 0.0,
    clear_existing: bool = False,
    upload: bool = True,
    xml: Path | None = None,
    checkpoint: TaskCheckpoint | None = None,
    progress: Progress | None = None,
) -> tuple[list[SkeletonTrack], bool]:
    """Track every frame, build and thin the tracks, then write ``xml`` and upload (nothing is sent
    before every frame is done, so a failure leaves the task as it was; the frames done stay in
    ``checkpoint``). The tracks, and whether they were found in the task rather than sent (the
    upload the run resumed left pending had been applied: :func:`upload_tracks`)."""
    frames = task_poses(opened, estimator, checkpoint, progress)
    tracks = build_tracks(
        tracker.track(frames, threshold=threshold),
        estimator.skeleton.num_keypoints,
        keypoint_threshold=keypoint_threshold,
        tolerance=tolerance,
    )
    if xml is not None:
        write_video_xml(xml, tracks, estimator.skeleton.keypoints, opened.frames)
    found = upload and upload_tracks(
        opened,
        tracks,
        clear_existing=clear_existing,
        checkpoint=checkpoint,
        log=progress.log if progress is not None else None,
    )
    return tracks, found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``annotate-task``'s arguments in ``python -m tools``."""
    parser.add_argument("task_ids", type=int, nargs="*", metavar="TASK_ID", help="the tasks to annotate")
    parser.add_argument("--project", type=int, metavar="ID", help="also every task of this project")
    parser.add_argument(
        "--server-host",
        help="CVAT's address, e.g. http://localhost:8080 (required; no default, since the local pose server "
        "listens on that port too)",
    )
    parser.add_argument("--auth", help="USER:PASSWORD; without it, a token from CVAT_ACCESS_TOKEN")
    parser.add_argument(
        "--function-url",
        metavar="URL",
        help="send the frames to this running function (Nuclio, or python -m tools serve) instead of "
        "loading the model here",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="with --function-url: frames in flight at once (default: %(default)s)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue each task from its checkpoint of an interrupted run"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where each task's checkpoint is kept until its tracks are uploaded (default: the current "
        "directory)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="keep a keyframe where CVAT's interpolation would miss a point by more pixels than this "
        "(default: %(default)s; 0 keeps every frame where a point moves)",
    )
    parser.add_argument("--threshold", type=float, default=0.0, help="minimum person (box) score")
    parser.add_argument(
        "--clear-existing",
        action="store_true",
        help="replace the task's annotations instead of adding to them",
    )
    parser.add_argument(
        "--xml",
        type=Path,
        help="also write the tracks as a CVAT for video 1.1 file (several tasks: a directory of "
        "task-ID.xml files)",
    )
    parser.add_argument("--no-upload", action="store_true", help="only write --xml, upload nothing")
    from alphapose.cvat.settings import add_setting_flags

    add_setting_flags(parser)
    from tools.tracker_flags import add_tracker_options

    add_tracker_options(parser.add_argument_group("tracker", "how persons are followed from frame to frame"))


@dataclass
class Outcome:
    """How one task went, for the summary: its tracks, or why it failed (and the exit status that gives),
    or that the run being resumed had done it (``done_before``), or had sent its tracks, lost the
    answer, and they were found in the task (``found_uploaded``)."""

    task_id: int
    tracks: list[SkeletonTrack] | None = None
    done_before: bool = False
    found_uploaded: bool = False
    frames: int = 0
    computed: int = 0
    seconds: float = 0.0
    error: str = ""
    status: int = 0
    kept: bool = False  # failed with frames in its checkpoint, which --resume goes on from


def run(args: argparse.Namespace) -> int:
    from alphapose.cvat.errors import ConfigError
    from alphapose.cvat.settings import Config, setting_flags
    from tools.errors import CommandError, check_threshold, interrupted, network_errors
    from tools.output import check_writable
    from tools.tracker_flags import tracker_options

    usage = _usage_error(args)
    if usage:
        raise CommandError(usage)
    check_threshold("--threshold", args.threshold)
    try:
        config = Config.from_env(flags=setting_flags(args))
        options = tracker_options(args)
        client = _client(args.server_host, args.auth)
        task_ids = _task_ids(client, args)
    except (ValueError, ConfigError, TaskError) as exc:
        raise CommandError(str(exc)) from None
    except _api_errors() as exc:
        raise CommandError(_api_message(exc, args.server_host, project=args.project), 1) from None
    except _sdk_errors() as exc:
        raise CommandError(_unreadable(args.server_host, exc), 1) from None
    except network_errors() as exc:
        raise CommandError(_unreachable(args.server_host, exc), 1) from None
    check_writable("--checkpoint-dir", args.checkpoint_dir, directory=True)
    left = [] if args.resume else left_behind(args.checkpoint_dir, task_ids)
    if left:  # found before any task is annotated again
        raise CommandError(
            f"an unfinished run of these tasks left {', '.join(map(str, left))}: run the same command with "
            "--resume to go on with it (the tasks it finished are left as they are), or delete them to "
            "start over"
        )
    if args.xml is not None:
        check_writable("--xml", args.xml, directory=len(task_ids) > 1)  # before any frame is tracked
    runner = _Runner(args, config, options, client, several=len(task_ids) > 1)
    outcomes = []
    try:
        for task_id in task_ids:
            outcomes.append(runner.task(task_id))
    except KeyboardInterrupt:
        return interrupted("the frames done are in the checkpoints; run the same command with --resume")
    except _FatalError as exc:
        raise CommandError(str(exc)) from None
    for line in summary(outcomes, upload=not args.no_upload, xml=args.xml):
        print(line, file=sys.stderr)
    status = max(outcome.status for outcome in outcomes)
    if status == 0:  # nothing left to resume
        for task_id in task_ids:
            forget_done(checkpoint_path(args.checkpoint_dir, task_id))
    return status


class _FatalError(Exception):
    """A problem that stops every task, which no --resume mends (the model cannot load, the function answers
    for another preset)."""


class _Runner:
    """The tasks of one command, one after another, sharing the model (loaded at the first task that
    opens) and the command's settings."""

    def __init__(
        self, args: argparse.Namespace, config: Any, options: TrackerOptions, client: Client, *, several: bool
    ) -> None:
        self.args, self.config, self.options, self.client = args, config, options, client
        self.several = several
        self.skeleton = config.options.pose_preset.skeleton
        self.estimator: Estimator | None = None

    def task(self, task_id: int) -> Outcome:
        """Annotate one task; a failure the user can fix ends only this task: it is reported as the command
        reports its own errors, becomes the task's outcome, and the other tasks go on."""
        from tools.errors import CommandError

        started = time.perf_counter()
        outcome = Outcome(task_id)
        try:
            self._annotate(task_id, outcome)
        except CommandError as exc:
            outcome.error, outcome.status = str(exc), exc.report()
            outcome.kept = checkpoint_path(self.args.checkpoint_dir, task_id).exists()
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _annotate(self, task_id: int, outcome: Outcome) -> None:
        """Annotate one task into ``outcome``; any failure a task can have is raised as a CommandError."""
        from tools.checkpoint import CheckpointError
        from tools.errors import CommandError, network_errors
        from tools.remote import FunctionError, WrongFunctionError

        try:
            opened = open_task(self.client, task_id, self.skeleton.keypoints)
            path = checkpoint_path(self.args.checkpoint_dir, task_id)
            settings = self._settings(task_id, opened)
            if self.args.resume and done_path(path).exists():
                if not task_done(path, settings):
                    raise TaskError(
                        f"task {task_id}: the run resumed annotated it with other settings "
                        f"({done_path(path)}); delete that file to annotate the task again"
                    )
                forget_checkpoint(path)  # left by a stop between the note and the deletion
                outcome.done_before = True
                return
            estimator = self._estimator()
            progress = Progress(task_id, len(opened.dataset.samples), _log)
            checkpoint = TaskCheckpoint(path, settings, resume=self.args.resume)
            try:
                tracks, found_uploaded = annotate(
                    opened,
                    estimator,
                    _tracker(self.skeleton, self.options),
                    keypoint_threshold=self.config.keypoint_thresholds(self.config.options.pose_preset),
                    tolerance=self.args.tolerance,
                    threshold=self.args.threshold,
                    clear_existing=self.args.clear_existing,
                    upload=not self.args.no_upload,
                    xml=self._xml(task_id),
                    checkpoint=checkpoint,
                    progress=progress,
                )
            finally:
                checkpoint.close()
            checkpoint.remove(done=not self.args.no_upload)
            outcome.tracks, outcome.found_uploaded = tracks, found_uploaded
            outcome.frames, outcome.computed = progress.done, progress.computed
        except TaskError as exc:
            raise CommandError(str(exc)) from None
        except CheckpointError as exc:
            raise CommandError(f"task {task_id}: {exc}") from None
        except WrongFunctionError as exc:  # the next task would get the same answer
            raise _FatalError(f"task {task_id}: {exc}") from None
        except FunctionError as exc:
            raise CommandError(f"task {task_id}: {exc}", 1) from None
        except _api_errors() as exc:
            raise CommandError(_api_message(exc, self.args.server_host, task=task_id), 1) from None
        except _sdk_errors() as exc:
            raise CommandError(f"task {task_id}: {_unreadable(self.args.server_host, exc)}", 1) from None
        except AnswerError as exc:
            raise CommandError(f"task {task_id}: {exc}", 1) from None
        except network_errors() as exc:
            raise CommandError(f"task {task_id}: {_unreachable(self.args.server_host, exc)}", 1) from None
        except OSError as exc:
            raise CommandError(f"task {task_id}: {exc}", 1) from None

    def _estimator(self) -> Estimator:
        if self.estimator is None:
            self.estimator = self._load()
        return self.estimator

    def _load(self) -> Estimator:
        from alphapose.cvat.errors import ConfigError
        from alphapose.cvat.predictor import Predictor, start_process
        from alphapose.errors import WeightsError
        from tools.remote import RemoteFunction

        if self.args.function_url:
            return RemoteFunction(self.args.function_url, self.skeleton, concurrency=self.args.concurrency)
        start_process(self.config)
        try:
            return LocalPoses(Predictor.load(self.config))
        except (ConfigError, WeightsError) as exc:
            raise _FatalError(str(exc)) from None

    def _settings(self, task_id: int, opened: OpenedTask) -> dict[str, Any]:
        """What a checkpoint must have been made with to be continued: the task (server, id, frames)
        and what computed the poses (the function, or the model's settings)."""
        frames = len(opened.dataset.samples)
        return {"server": self.args.server_host, "task": task_id, "frames": frames, "poses": self._source}

    @cached_property
    def _source(self) -> dict[str, str]:
        """What computes the poses, the same for every task of the run (the calibration set is read once)."""
        if self.args.function_url:
            return {"function_url": self.args.function_url, "preset": self.config.options.pose_preset.name}
        return self.config.model_record()

    def _xml(self, task_id: int) -> Path | None:
        """Where the task's ``--xml`` goes, its directory made."""
        if self.args.xml is None:
            return None
        path = self.args.xml / f"task-{task_id}.xml" if self.several else self.args.xml
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def summary(outcomes: Sequence[Outcome], *, upload: bool, xml: Path | None) -> list[str]:
    """The closing lines: one per task (its tracks and speed, or its error), and with several tasks a
    count of those done."""
    lines = []
    for outcome in outcomes:
        if outcome.done_before:
            lines.append(f"task {outcome.task_id}: already annotated by the run resumed, left as it is")
            continue
        if outcome.tracks is None:
            if len(outcomes) > 1:  # a single task's error was the last line printed
                lines.append(f"task {outcome.task_id}: FAILED: {outcome.error}")
            elif outcome.kept and outcome.status == 1 and "--resume" not in outcome.error:
                # a server or a file failed, not the settings
                lines.append("the frames done are kept: --resume goes on from them")
            continue
        keyframes = sum(len(track.keyframes) for track in outcome.tracks)
        where = f"uploaded to task {outcome.task_id}" if upload else f"written to {xml}"
        if outcome.found_uploaded:
            where = f"found in task {outcome.task_id} (the run resumed had uploaded them), not sent again"
        line = f"{len(outcome.tracks)} track(s), {keyframes} keyframe(s) {where}"
        speed = f"{outcome.frames} frames ({outcome.computed} computed) in {duration(outcome.seconds)}"
        if outcome.computed and outcome.seconds > 0:
            speed += f", {outcome.computed / outcome.seconds:.2f} frames/s"
        lines.append(f"task {outcome.task_id}: {line}; {speed}")
    if len(outcomes) > 1:
        done = sum(outcome.tracks is not None or outcome.done_before for outcome in outcomes)
        lines.append(f"{done} of {len(outcomes)} tasks annotated")
        if done < len(outcomes):
            lines.append("run the same command with --resume to go on: the tasks done are left as they are")
    return lines


def _usage_error(args: argparse.Namespace) -> str | None:
    """A flag combination that cannot work, named as typed; None when there is none."""
    from tools.errors import http_url

    if not args.task_ids and args.project is None:
        return "give TASK_ID... or --project ID"
    if args.no_upload and args.xml is None:
        return "--no-upload writes nothing without --xml FILE"
    if not (args.tolerance >= 0 and args.tolerance < float("inf")):
        return f"--tolerance {args.tolerance}: must be a number of pixels >= 0"
    if args.concurrency < 1:
        return f"--concurrency {args.concurrency}: must be at least 1"
    if args.concurrency > 1 and not args.function_url:
        return "--concurrency is for --function-url; the model loaded here takes one frame at a time"
    if args.function_url and not http_url(args.function_url):  # found before the task opens
        return (
            f"invalid --function-url {args.function_url!r}: give the function's HTTP address, e.g. "
            "http://localhost:32768"
        )
    return None


def _task_ids(client: Client, args: argparse.Namespace) -> list[int]:
    """The tasks given, then the project's (each once, in order). The tasks given must all exist before
    any is annotated: a mistyped id is found now, not after the tasks before it have run for hours."""
    ids = list(args.task_ids)
    missing = [
        task_id for task_id in dict.fromkeys(ids) if not _task_exists(client, task_id, args.server_host)
    ]
    if missing:
        raise TaskError(
            f"task {', '.join(map(str, missing))}: no such task on {args.server_host} (or none you can see); "
            f"check the id{'s' if len(missing) > 1 else ''}: no task was annotated"
        )
    if args.project is not None:
        from cvat_sdk.core.helpers import get_paginated_collection

        tasks = get_paginated_collection(client.api_client.tasks_api.list_endpoint, project_id=args.project)
        if not tasks:
            raise TaskError(f"--project {args.project}: no tasks (no such project, or none you can see)")
        ids += sorted(task.id for task in tasks)
    return list(dict.fromkeys(ids))


def _task_exists(client: Client, task_id: int, host: str) -> bool:
    """Whether CVAT has the task (and shows it to these credentials); another error status is the
    command's failure, naming the task."""
    from cvat_sdk.api_client.exceptions import ApiException, NotFoundException

    try:
        client.api_client.tasks_api.retrieve(task_id, _parse_response=False)  # the answer is read later
    except NotFoundException:
        return False
    except ApiException as exc:
        from tools.errors import CommandError

        raise CommandError(_api_message(exc, host, task=task_id), 1) from None
    return True


def _api_errors() -> tuple[type[Exception], ...]:
    from cvat_sdk.api_client.exceptions import ApiException

    return (ApiException,)


def _sdk_errors() -> tuple[type[Exception], ...]:
    """What the SDK raises besides an HTTP error status (caught before these): an answer its models
    cannot take (a field of another type, a value its enums lack), as from a server of another version."""
    from cvat_sdk.api_client.exceptions import OpenApiException

    return (OpenApiException,)


def _unreadable(host: str, exc: Exception) -> str:
    """The one line for an answer of ``host`` the SDK cannot read, with what to do."""
    from cvat_sdk import __version__

    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (
        f"cvat-sdk {__version__} cannot read the answer of {host} ({detail}); install the cvat-sdk release "
        "of the server's version (its /api/server/about names it)"
    )


def _api_message(exc: Any, host: str, *, task: int | None = None, project: int | None = None) -> str:
    what = f"task {task}" if task is not None else f"project {project}"
    return f"{what} on {host}: HTTP {exc.status} {exc.reason}"


def _client(host: str | None, auth: str | None) -> Client:
    """A logged-in SDK client of the CVAT server at ``host``: ``--auth USER:PASSWORD``, else the token in
    ``CVAT_ACCESS_TOKEN``. A server that answers, but not as CVAT, is a :class:`TaskError` saying so."""
    from cvat_sdk import Client
    from cvat_sdk.api_client.exceptions import OpenApiException
    from cvat_sdk.core.client import AccessTokenCredentials
    from cvat_sdk.core.exceptions import InvalidHostException

    if not host:
        raise TaskError("--server-host: give CVAT's address, e.g. --server-host http://localhost:8080")
    if auth is not None:
        user, colon, password = auth.partition(":")
        if not colon or not user:
            raise TaskError("--auth takes USER:PASSWORD")
        credentials: Any = (user, password)
    else:
        token = os.environ.get("CVAT_ACCESS_TOKEN")
        if not token:
            raise TaskError("no credentials: give --auth USER:PASSWORD or set CVAT_ACCESS_TOKEN")
        credentials = AccessTokenCredentials(token)
    try:
        client = Client(host, check_server_version=False)
    except InvalidHostException as exc:
        raise TaskError(
            f"invalid --server-host {host!r}: {exc}; give CVAT's address, e.g. http://localhost:8080"
        ) from None
    try:
        client.get_server_version()  # GET /api/server/about, which every CVAT answers without login
    except OpenApiException as exc:
        raise TaskError(_not_cvat(host, exc)) from None
    client.check_server_version()  # the SDK's warning when its version and the server's differ
    client.login(credentials)
    return client


def _not_cvat(host: str, exc: Exception) -> str:
    """Why the answer of ``host`` is not CVAT's, and what to give instead."""
    from tools.server.http import SERVER_NAME

    status = getattr(exc, "status", None)
    answer = f"HTTP {status} {getattr(exc, 'reason', '')}".strip() if status else "no server description"
    server = str((getattr(exc, "headers", None) or {}).get("Server", ""))
    which = "; it is the pose function's local server (make serve)" if server.startswith(SERVER_NAME) else ""
    return (
        f"--server-host {host} answers, but not as CVAT ({answer} for /api/server/about{which}): give "
        "CVAT's address, e.g. http://localhost:8080"
    )


def _unreachable(host: str, exc: BaseException) -> str:
    """The one line for a network failure on the way to CVAT, with what to check."""
    from tools.errors import network_problem

    return (
        f"cannot reach CVAT at {host}: {network_problem(exc)}; check --server-host and that the server "
        "runs and is reachable from here"
    )


def _tracker(skeleton: Skeleton, options: TrackerOptions) -> Tracker:
    from alphapose.pose.skeletons import oks_sigmas
    from alphapose.tracking import PoseTracker

    return PoseTracker(options, sigmas=oks_sigmas(skeleton))


def _log(message: str) -> None:
    print(message, file=sys.stderr)
