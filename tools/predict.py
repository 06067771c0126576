"""``python -m tools predict``: the function's model run locally on image files, or persons tracked
through a video (a file, a directory of frames, or a directory of video files)."""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alphapose.cvat.errors import ConfigError
from alphapose.cvat.formats import OUTPUT_FORMATS
from alphapose.cvat.settings import Config, add_setting_flags, setting_flags
from alphapose.errors import ImageError, VideoError, WeightsError
from alphapose.images import FRAME_SUFFIXES, VIDEO_SUFFIXES
from tools.errors import CommandError, check_threshold
from tools.output import RENDER_SUFFIXES, JsonList, check_writable, render_image, unwritable, write_json
from tools.tracker_flags import add_tracker_options, tracker_options

if TYPE_CHECKING:
    from alphapose.cvat.predictor import Predictor

IMAGE_SUFFIXES = FRAME_SUFFIXES  # the image files --render writes, as a directory's frames are read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files, or one video file, one directory of frames (read in name order) or one "
        "directory of video files (with --out DIR)",
    )
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    parser.add_argument(
        "--render",
        type=Path,
        help="draw the skeletons: an image file (one input) or a directory; for a video, a video file "
        f"({', '.join(RENDER_SUFFIXES)})",
    )
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        help="cvat: {image path: [skeletons]}; coco: AlphaPose's results list (default: cvat for "
        "images; a video always gives coco, with the track in idx)",
    )
    parser.add_argument("--threshold", type=float, default=0.0, help="minimum person (box) score")
    add_setting_flags(parser)
    group = parser.add_argument_group("videos", "for a video file or a directory of frames")
    group.add_argument(
        "--frame-batch",
        type=int,
        help="frames per detector forward (default: 1 on a CPU, where batching gains nothing; 8 on CUDA)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_tracker_options(group)


def run(args: argparse.Namespace) -> int:
    check_threshold("--threshold", args.threshold)
    video = _video_input(args.images)
    if video is not None:
        return _predict_video(args, video)
    if args.render and _names_image(args.render) and len(args.images) > 1:
        raise CommandError(f"--render {args.render} names one file but there are {len(args.images)} images")
    render_directory = args.render is not None and not _names_image(args.render)  # a drawn image each
    _check_outputs(args, out_directory=False, render_directory=render_directory)
    missing = next((path for path in args.images if not path.exists()), None)
    if missing is not None:  # now, not after the model loads and the images before it run
        raise CommandError(f"cannot read {missing}: No such file or directory", 1)
    predictor = load(read_settings(args))
    cvat_answers: dict[str, list[dict[str, Any]]] = {}
    coco_answers: list[dict[str, Any]] = []
    read: deque[tuple[Path, Any]] = deque()  # the images decoded, not yet answered

    def images() -> Iterator[Any]:
        for path in args.images:
            read.append((path, _read_image(path, predictor.settings.max_pixels)))
            yield read[-1][1]

    for poses in predictor.poses(images()):  # several images per detector forward on a GPU
        path, image = read.popleft()
        skeletons = predictor.answer(poses, threshold=args.threshold)
        cvat_answers[str(path)] = skeletons
        coco_answers += predictor.answer(
            poses, output_format="coco", threshold=args.threshold, image_id=path.name
        )
        print(f"{path}: {len(skeletons)} person(s)", file=sys.stderr)
        if args.render:
            render_image(image, skeletons, _render_path(args.render, path))
    write_json(coco_answers if args.format == "coco" else cvat_answers, args.out)
    return 0


def _read_image(path: Path, max_pixels: int) -> Any:
    from alphapose.images.decode import read_image_file

    try:
        return read_image_file(path, max_pixels=max_pixels)
    except ImageError as exc:
        raise CommandError(str(exc), 1) from None


def read_settings(args: argparse.Namespace) -> Config:
    """The settings of the command's setting flags over the ``ALPHAPOSE_*`` environment."""
    try:
        return Config.from_env(flags=setting_flags(args))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def load(settings: Config) -> Predictor:
    """The predictor of ``settings``, after the process-wide start-up steps: the one place the command
    imports the model, so its parser and the checks of its flags run without PyTorch."""
    from alphapose.cvat.predictor import Predictor, start_process

    try:
        start_process(settings)
        return Predictor.load(settings)
    except (ConfigError, WeightsError) as exc:
        raise CommandError(str(exc)) from None


def _video_input(paths: Sequence[Path]) -> Path | None:
    """The video (a file named as one, or a directory of frames) among the inputs, or None: anything
    else is read as an image, and refused as one when it is not."""
    videos = [p for p in paths if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES]
    if not videos:
        return None
    if len(paths) > 1:
        raise CommandError(f"{videos[0]} is a video or a directory of frames: give it as the only input")
    return videos[0]


def _predict_video(args: argparse.Namespace, path: Path) -> int:
    """Track the persons of a video (or a directory of frames) and write AlphaPose's results, frame by
    frame, with each person's track id in ``idx``; nothing is kept in memory but the current frames.

    A directory holding video files and no frames is a directory of videos: each is tracked with the
    one model load, its results written to ``--out DIR/<video name>.json`` (``--render DIR/<video
    name>.mp4``); a video that fails is reported and the others go on.
    """
    from alphapose.images.video import FrameSource

    videos = _videos_in(path)
    problem = _video_flags_problem(args, path, videos)
    if problem:
        raise CommandError(problem)
    _check_outputs(args, out_directory=bool(videos), render_directory=bool(videos))
    try:
        options = tracker_options(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    settings = read_settings(args)
    source = None
    if not videos:
        try:
            source = FrameSource(path, max_pixels=settings.max_pixels)
        except VideoError as exc:
            raise CommandError(str(exc), 1) from None
    predictor = load(settings)
    if source is not None:
        error = _track_video(args, source, predictor, options, args.out, args.render)
        if error:
            raise CommandError(error, 1)
        return 0
    failed = []
    for video in videos:
        render = None if args.render is None else args.render / f"{video.stem}.mp4"
        try:
            error = _track_video(
                args,
                FrameSource(video, max_pixels=settings.max_pixels),
                predictor,
                options,
                args.out / f"{video.stem}.json",
                render,
            )
        except VideoError as exc:
            error = str(exc)
        if error:
            CommandError(error, 1).report()  # the line a single video's failure ends the command with
            failed.append(video)
    print(f"{len(videos) - len(failed)} of {len(videos)} videos tracked into {args.out}", file=sys.stderr)
    for video in failed:
        print(f"failed: {video}", file=sys.stderr)
    return 1 if failed else 0


def _video_flags_problem(args: argparse.Namespace, path: Path, videos: Sequence[Path]) -> str | None:
    """What is wrong with the flags for a video (``videos``: those of a directory of videos)."""
    if args.format == "cvat":
        return "--format cvat is for images; a video gives AlphaPose's results (coco)"
    if videos and (args.out is None or args.out.suffix.lower() == ".json"):
        return f"{path} is a directory of {len(videos)} videos: give --out DIR for one results file each"
    if videos and args.render and args.render.suffix:
        return f"--render {args.render}: for a directory of videos, name a directory"
    if not videos and args.render and args.render.suffix.lower() not in RENDER_SUFFIXES:
        return f"--render {args.render}: for a video, name a video file ({', '.join(RENDER_SUFFIXES)})"
    if args.frame_batch is not None and args.frame_batch < 1:
        return f"invalid --frame-batch {args.frame_batch}: must be at least 1"
    return None


def _videos_in(path: Path) -> list[Path]:
    """The video files of a directory that holds no frames (a directory of videos), in name order;
    empty for a video file or a directory of frames. A directory of both is refused: read as either,
    the other kind would be left out without a word."""
    if not path.is_dir():
        return []
    files = sorted(p for p in path.iterdir() if p.is_file())
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if not any(p.suffix.lower() in FRAME_SUFFIXES for p in files):
        return videos
    if videos:
        raise CommandError(
            f"{path} holds both frames and video files ({', '.join(p.name for p in videos[:3])}"
            f"{', ...' if len(videos) > 3 else ''}): put the frames and the videos in separate directories"
        )
    return []


def _track_video(
    args: argparse.Namespace,
    source: Any,
    predictor: Predictor,
    options: Any,
    out: Path | None,
    render_path: Path | None,
) -> str | None:
    """One video tracked and written; the error that stopped it, or None.

    ``--threshold`` filters what is written and drawn after tracking (:meth:`Predictor.track`).
    """
    from tqdm import tqdm

    path = source.path
    pending: deque[Any] = deque()  # the frames read but not yet answered: a batch and the unsettled ones

    def images() -> Iterator[Any]:
        for frame in source:
            pending.append(frame)
            yield frame.image

    frames = persons = 0
    tracks: set[int] = set()
    progress = tqdm(
        total=source.frame_count, unit="frame", desc=path.name, file=sys.stderr, disable=args.no_progress
    )
    try:
        with JsonList(out) as results, _VideoRender(render_path, source.fps, predictor) as render:
            tracked_frames = predictor.track(
                images(), options, threshold=args.threshold, frame_batch=args.frame_batch
            )
            for tracked in tracked_frames:
                frame = pending.popleft()
                kept = tracked.persons
                entries = predictor.answer(
                    [pose for _, pose in kept], output_format="coco", image_id=frame.name
                )
                for entry, (track_id, _) in zip(entries, kept, strict=True):
                    entry["idx"] = track_id
                    results.write(entry)
                render.write(frame.image, kept)
                frames, persons = frames + 1, persons + len(kept)
                tracks.update(track_id for track_id, _ in kept)
                progress.update()
    except VideoError as exc:
        return str(exc)
    finally:
        progress.close()
    print(f"{path}: {frames} frame(s), {persons} person(s) in {len(tracks)} track(s)", file=sys.stderr)
    if render_path:
        print(f"rendered {render_path}", file=sys.stderr)
    return None


class _VideoRender:
    """The rendered video of ``--render``: skeletons and track ids drawn on each frame."""

    def __init__(self, path: Path | None, fps: float, predictor: Predictor) -> None:
        self.path, self.fps, self.predictor = path, fps, predictor
        self.writer: Any = None

    def __enter__(self) -> _VideoRender:
        return self

    def write(self, image: Any, tracked: Sequence[tuple[int, Any]]) -> None:
        if self.path is None:
            return
        from tools.render import VideoWriter, draw_labels, draw_skeletons

        if self.writer is None:
            try:
                self.writer = VideoWriter(self.path, self.fps, (image.shape[1], image.shape[0]))
            except OSError as exc:
                raise unwritable("--render", self.path, exc) from None
        drawn = self.predictor.answer([pose for _, pose in tracked])
        labels = [(str(track_id), (float(pose.box[0]), float(pose.box[1]))) for track_id, pose in tracked]
        self.writer.write(draw_labels(draw_skeletons(image, drawn), labels))

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.release()


def _render_path(target: Path, image: Path) -> Path:
    """``target`` itself when it names an image file, else ``<target>/<image stem>.png``."""
    return target if _names_image(target) else target / f"{image.stem}.png"


def _names_image(target: Path) -> bool:
    return target.suffix.lower() in IMAGE_SUFFIXES


def _check_outputs(args: argparse.Namespace, *, out_directory: bool, render_directory: bool) -> None:
    """Refuse, before the model loads, an ``--out`` or ``--render`` that could not be written at the end
    (a directory: one file each in it)."""
    if args.out is not None:
        check_writable("--out", args.out, directory=out_directory)
    if args.render is not None:
        check_writable("--render", args.render, directory=render_directory)
