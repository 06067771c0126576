"""``python -m tools annotate-task TASK_ID``: a CVAT task's frames to ``person`` skeleton tracks.

    python -m tools annotate-task TASK_ID --server-host URL [--auth USER:PASSWORD]
        [--tolerance PX] [--threshold T] [--clear-existing] [--xml FILE] [--no-upload] [model options]

It reads the task's frames through the CVAT SDK as its auto-annotation driver does (``TaskDataset``,
frame indexes 0 to size - 1 without the deleted frames; chunks of images fetched as needed for a task
whose original chunks are image sets, single frames decoded by the server for a video task), runs the
pipeline and :class:`alphapose.tracking.PoseTracker` on each frame, builds the tracks with thinned
keyframes (:mod:`alphapose.cvat.tracks`) and uploads them in one request: appended to what the task
holds, or, with ``--clear-existing`` (the SDK driver's name), replacing all of it. ``--xml FILE`` also
writes them as a CVAT for video 1.1 file (:mod:`alphapose.cvat.video_xml`); with ``--no-upload``, only
that. The task is checked before the model loads: it must have frames and a ``person`` skeleton label
whose points are exactly the preset's (as the SDK driver requires of a function's skeleton).
Credentials: ``--auth`` or a personal access token in ``CVAT_ACCESS_TOKEN``, as cvat-cli takes them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alphapose.cvat.spec import PERSON_LABEL
from alphapose.cvat.tracks import DEFAULT_TOLERANCE, SkeletonTrack, TrackedFrame, build_tracks
from alphapose.cvat.video_xml import TaskFrames, write_video_xml

if TYPE_CHECKING:
    from cvat_sdk import Client, models
    from cvat_sdk.core.proxies.tasks import Task
    from cvat_sdk.datasets import TaskDataset

    from alphapose.pipeline import Pose
    from alphapose.skeletons import Skeleton
    from alphapose.tracking import TrackerOptions

PROGRESS_INTERVAL = 2.0  # seconds between progress lines


class TaskError(Exception):
    """A task this command cannot annotate; the message names the task and says what to change."""


class Tracker(Protocol):
    """What the command needs of :class:`alphapose.tracking.PoseTracker`: one call per frame."""

    def update(self, poses: Sequence[Pose]) -> list[int]: ...


class Pipeline(Protocol):
    """What the command needs of :class:`alphapose.PosePipeline`."""

    skeleton: Skeleton

    def __call__(self, image: Any) -> list[Pose]: ...


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


def tracked_frames(
    opened: OpenedTask,
    pipeline: Pipeline,
    tracker: Tracker,
    *,
    threshold: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> Iterator[TrackedFrame]:
    """Each of the task's frames, in order, with its persons (box score at least ``threshold``) and
    their track ids; ``log`` gets a progress line every few seconds and at the end."""
    from alphapose.cvat.request import to_rgb

    total = len(opened.dataset.samples)
    started = last = time.perf_counter()
    with opened.dataset.iter_samples(temporary_chunks=True) as samples:
        for done, sample in enumerate(samples, start=1):
            poses = [
                pose for pose in pipeline(to_rgb(sample.media.load_image())) if pose.box_score >= threshold
            ]
            ids = tracker.update(poses)
            yield sample.frame_index, list(zip(ids, poses, strict=True))
            now = time.perf_counter()
            if log is not None and (now - last >= PROGRESS_INTERVAL or done == total):
                last = now
                rate = done / (now - started)
                log(f"task {opened.frames.task_id}: {done}/{total} frames, {rate:.2f} frames/s")


def track_requests(tracks: Iterable[SkeletonTrack], labels: TaskLabels) -> list[models.LabeledTrackRequest]:
    """The tracks as the SDK's request models: a skeleton track, and an element track per point that
    CVAT keeps (:meth:`SkeletonTrack.point_keyframes`; see :mod:`alphapose.cvat.tracks`)."""
    from cvat_sdk import models

    def shape(kind: str, frame: int, points: list[float], outside: bool) -> models.TrackedShapeRequest:
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

    return [
        models.LabeledTrackRequest(
            label_id=labels.person,
            frame=track.frame,
            group=0,
            source="auto",
            attributes=[],
            shapes=[shape("skeleton", k.frame, [], k.outside) for k in track.keyframes],
            elements=[
                models.SubLabeledTrackRequest(
                    label_id=point_id,
                    frame=track.frame,
                    group=0,
                    source="auto",
                    attributes=[],
                    shapes=[shape("points", k.frame, list(k.point), k.outside) for k in keyframes],
                )
                for point_id, keyframes in zip(
                    labels.points, map(track.point_keyframes, range(len(labels.points))), strict=True
                )
                if keyframes
            ],
        )
        for track in tracks
    ]


def upload_tracks(opened: OpenedTask, tracks: Sequence[SkeletonTrack], *, clear_existing: bool) -> None:
    """All tracks in one request: replacing the task's annotations (``clear_existing``, as the SDK
    driver does it: tags, shapes and tracks) or added to them."""
    from cvat_sdk import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    requests = track_requests(tracks, opened.labels)
    if clear_existing:
        opened.task.set_annotations(models.LabeledDataRequest(tags=[], shapes=[], tracks=requests))
    else:
        opened.task.update_annotations(
            models.PatchedLabeledDataRequest(tracks=requests), action=AnnotationUpdateAction.CREATE
        )


def annotate(
    opened: OpenedTask,
    pipeline: Pipeline,
    tracker: Tracker,
    *,
    keypoint_threshold: float | Sequence[float],
    tolerance: float = DEFAULT_TOLERANCE,
    threshold: float = 0.0,
    clear_existing: bool = False,
    upload: bool = True,
    xml: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[SkeletonTrack]:
    """Track every frame, build and thin the tracks, then write ``xml`` and upload (nothing is sent
    before every frame is done, so a failure leaves the task as it was)."""
    frames = tracked_frames(opened, pipeline, tracker, threshold=threshold, log=log)
    tracks = build_tracks(
        frames, pipeline.skeleton.num_keypoints, keypoint_threshold=keypoint_threshold, tolerance=tolerance
    )
    if xml is not None:
        write_video_xml(xml, tracks, pipeline.skeleton.keypoints, opened.frames)
    if upload:
        upload_tracks(opened, tracks, clear_existing=clear_existing)
    return tracks


def add_parser(commands: Any, add_model_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``annotate-task`` in ``python -m tools``; ``add_model_options`` adds predict's model flags."""
    parser = commands.add_parser(
        "annotate-task", help="track persons over a CVAT task's frames and upload skeleton tracks"
    )
    parser.add_argument("task_id", type=int, metavar="TASK_ID")
    parser.add_argument(
        "--server-host",
        help="CVAT's address, e.g. http://localhost:8080 (required; no default, since the local pose server "
        "listens on that port too)",
    )
    parser.add_argument("--auth", help="USER:PASSWORD; without it, a token from CVAT_ACCESS_TOKEN")
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
    parser.add_argument("--xml", type=Path, help="also write the tracks as a CVAT for video 1.1 file")
    parser.add_argument("--no-upload", action="store_true", help="only write --xml, upload nothing")
    add_model_options(parser)
    from tools.cli import add_tracker_options

    add_tracker_options(parser.add_argument_group("tracker", "how persons are followed from frame to frame"))
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from cvat_sdk.api_client.exceptions import ApiException

    from alphapose.cvat.config import Config
    from alphapose.cvat.errors import ConfigError
    from alphapose.errors import WeightsError
    from alphapose.runtime import configure_cpu_threads
    from tools.cli import setting_flags, tracker_options
    from tools.errors import network_errors

    if args.no_upload and args.xml is None:
        print("error: --no-upload writes nothing without --xml FILE", file=sys.stderr)
        return 2
    if not (args.tolerance >= 0 and args.tolerance < float("inf")):
        print(f"error: --tolerance {args.tolerance}: must be a number of pixels >= 0", file=sys.stderr)
        return 2
    try:
        options = tracker_options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        config = Config.from_env(flags=setting_flags(args))
        client = _client(args.server_host, args.auth)
        skeleton = config.options.pose_preset.skeleton
        opened = open_task(client, args.task_id, skeleton.keypoints)
        configure_cpu_threads()
        pipeline = config.load_pipeline()
        tracks = annotate(
            opened,
            pipeline,
            _tracker(skeleton, options),
            keypoint_threshold=config.keypoint_thresholds(pipeline.preset),
            tolerance=args.tolerance,
            threshold=args.threshold,
            clear_existing=args.clear_existing,
            upload=not args.no_upload,
            xml=args.xml,
            log=_log,
        )
    except (ConfigError, WeightsError, TaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ApiException as exc:
        print(
            f"error: task {args.task_id} on {args.server_host}: HTTP {exc.status} {exc.reason}",
            file=sys.stderr,
        )
        return 1
    except network_errors() as exc:
        print(f"error: {_unreachable(args.server_host, exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    keyframes = sum(len(track.keyframes) for track in tracks)
    done = "written to " + str(args.xml) if args.no_upload else f"uploaded to task {args.task_id}"
    print(f"{len(tracks)} track(s), {keyframes} keyframe(s) {done}", file=sys.stderr)
    return 0


def _client(host: str | None, auth: str | None) -> Client:
    """A logged-in SDK client of the CVAT server at ``host``: ``--auth USER:PASSWORD``, else the token in
    ``CVAT_ACCESS_TOKEN``. A server that answers, but not as CVAT, is a :class:`TaskError` saying so."""
    from cvat_sdk import Client
    from cvat_sdk.api_client.exceptions import OpenApiException
    from cvat_sdk.core.client import AccessTokenCredentials

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
    client = Client(host, check_server_version=False)
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
    from alphapose.skeletons import oks_sigmas
    from alphapose.tracking import PoseTracker

    return PoseTracker(options, sigmas=oks_sigmas(skeleton))


def _log(message: str) -> None:
    print(message, file=sys.stderr)
