"""``python -m tools``: run the function's model locally, call a deployed function, or serve it.

    python -m tools predict IMAGE... [--out results.json] [--render out.png|DIR] [--format cvat|coco]
    python -m tools predict VIDEO|FRAMES_DIR [--out results.json] [--render out.mp4] [tracker flags]
    python -m tools predict VIDEOS_DIR --out DIR [--render DIR] [tracker flags]
    python -m tools call URL IMAGE [--threshold T] [--render out.png] [--out answer.json]
    python -m tools serve [--host 127.0.0.1] [--port 8080] [--workers N]
    python -m tools annotate-task TASK_ID... | --project ID [--function-url URL] [--resume] [--xml FILE]
    python -m tools evaluate --annotations FILE --images DIR [--detections FILE | --gt-boxes]

``predict`` reads the same ``ALPHAPOSE_*`` variables as the function (flags override them) and answers
with the same formats; given a video file or a directory of frames, it tracks the persons through it
and writes AlphaPose's results with each person's track in ``idx``, as AlphaPose's demo does with
tracking on; ``call`` posts exactly what CVAT posts; ``serve`` runs main.py behind a local
stand-in for Nuclio's HTTP trigger. ``python -m alphapose.weights`` downloads the official weights.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from alphapose.cvat.errors import ConfigError, RequestError
from alphapose.cvat.request import OUTPUT_FORMATS, allow_large_images, decode_image
from alphapose.cvat.settings import Config, add_setting_flags, setting_flags
from alphapose.errors import SyntheticWeightsWarning, VideoError, WeightsError
from alphapose.images.video import FRAME_SUFFIXES
from tools import annotate_task
from tools.errors import network_errors, network_problem
from tools.remote import CVAT_REQUEST_TIMEOUT
from tools.server import http
from tools.tracker_flags import add_tracker_options, tracker_options

IMAGE_SUFFIXES = FRAME_SUFFIXES  # the image files --render writes, as a directory's frames are read
RENDER_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")  # what --render writes for a video (MPEG-4 part 2)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    with warnings.catch_warnings():  # restores both settings below when the command ends
        warnings.simplefilter("default", SyntheticWeightsWarning)  # once per run and directory
        warnings.showwarning = _show_warning(warnings.showwarning)
        return command(args)


def _show_warning(show: Callable[..., None]) -> Callable[..., None]:
    """``show``, except that the library's synthetic-weights warning is one line: ``warning: ...``."""

    def shown(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, SyntheticWeightsWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)

    return shown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools",
        description="Run the function's model locally, call a deployed function, or serve it.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict", help="run the model on image files, or track persons through a video"
    )
    predict.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files, or one video file, one directory of frames (read in name order) or one "
        "directory of video files (with --out DIR)",
    )
    predict.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    predict.add_argument(
        "--render",
        type=Path,
        help="draw the skeletons: an image file (one input) or a directory; for a video, a video file "
        f"({', '.join(RENDER_SUFFIXES)})",
    )
    predict.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        help="cvat: {image path: [skeletons]}; coco: AlphaPose's results list (default: cvat for "
        "images; a video always gives coco, with the track in idx)",
    )
    predict.add_argument("--threshold", type=float, default=0.0, help="minimum person (box) score")
    add_setting_flags(predict)
    _add_video_options(predict)
    predict.set_defaults(command=_predict)

    call = commands.add_parser("call", help="post an image to a deployed function as CVAT does")
    call.add_argument("url", help="the function's HTTP address, e.g. http://localhost:32768")
    call.add_argument("image", type=Path)
    call.add_argument("--threshold", type=float, default=0.0, help="sent only when non-zero, as CVAT does")
    call.add_argument("--out", type=Path, help="write the answer here instead of stdout")
    call.add_argument("--render", type=Path, help="draw the answer on the image into this file")
    call.add_argument(
        "--timeout", type=float, default=CVAT_REQUEST_TIMEOUT, help="seconds (default: %(default)s)"
    )
    call.set_defaults(command=_call)

    serve = commands.add_parser("serve", help="serve main.handler over HTTP like a Nuclio HTTP trigger")
    http.add_arguments(serve)
    serve.set_defaults(command=_serve)

    annotate_task.add_parser(commands)
    from tools import evaluate

    evaluate.add_parser(commands)
    return parser


def _add_video_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("videos", "for a video file or a directory of frames")
    group.add_argument(
        "--frame-batch",
        type=int,
        help="frames per detector forward (default: 1 on a CPU, where batching gains nothing; 8 on CUDA)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_tracker_options(group)


def _video_input(paths: Sequence[Path]) -> Path | None:
    """The video (a file named as one, or a directory of frames) among the inputs, or None: anything
    else is read as an image, and refused as one when it is not."""
    from alphapose.images.video import VIDEO_SUFFIXES

    videos = [p for p in paths if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES]
    if not videos:
        return None
    if len(paths) > 1:
        raise ValueError(f"{videos[0]} is a video or a directory of frames: give it as the only input")
    return videos[0]


def _predict(args: argparse.Namespace) -> int:
    from alphapose.cvat.formats import coco_results, cvat_skeletons

    try:
        video = _video_input(args.images)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if video is not None:
        return _predict_video(args, video)
    if args.render and args.render.suffix.lower() in IMAGE_SUFFIXES and len(args.images) > 1:
        print(
            f"error: --render {args.render} names one file but there are {len(args.images)} images",
            file=sys.stderr,
        )
        return 2
    try:
        config, pipeline = _load(args)
    except (ConfigError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cvat_answers: dict[str, list[dict[str, Any]]] = {}
    coco_answers: list[dict[str, Any]] = []
    for path in args.images:
        try:
            image = decode_image(path.read_bytes(), max_pixels=config.max_pixels)
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        except RequestError as exc:
            print(f"error: cannot use {path} as an image: {exc.detail}", file=sys.stderr)
            return 1
        poses = pipeline(image)
        skeletons = cvat_skeletons(
            poses,
            pipeline.skeleton,
            threshold=args.threshold,
            keypoint_threshold=config.keypoint_thresholds(pipeline.preset),
        )
        cvat_answers[str(path)] = skeletons
        coco_answers += coco_results(poses, threshold=args.threshold, image_id=path.name)
        print(f"{path}: {len(skeletons)} person(s)", file=sys.stderr)
        if args.render:
            _render(image, skeletons, _render_path(args.render, path))
    _write_json(coco_answers if args.format == "coco" else cvat_answers, args.out)
    return 0


def _load(args: argparse.Namespace) -> tuple[Config, Any]:
    """The settings and the pipeline of ``predict``'s flags (ConfigError, WeightsError)."""
    from alphapose.engines.threads import configure_cpu_threads

    config = Config.from_env(flags=setting_flags(args))
    configure_cpu_threads()
    allow_large_images(config.max_pixels)
    return config, config.load_pipeline()


def _predict_video(args: argparse.Namespace, path: Path) -> int:
    """Track the persons of a video (or a directory of frames) and write AlphaPose's results, frame by
    frame, with each person's track id in ``idx``; nothing is kept in memory but the current frames.

    A directory holding video files and no frames is a directory of videos: each is tracked with the
    one model load, its results written to ``--out DIR/<video name>.json`` (``--render DIR/<video
    name>.mp4``); a video that fails is reported and the others go on.
    """
    videos = _videos_in(path)
    problem = _video_flags_problem(args, path, videos)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        options = tracker_options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not videos:
        try:
            source = _open_video(path)
        except VideoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        config, pipeline = _load(args)
    except (ConfigError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not videos:
        error = _track_video(args, source, pipeline, config, options, args.out, args.render)
        if error:
            print(f"error: {error}", file=sys.stderr)
        return 1 if error else 0
    failed = []
    for video in videos:
        render = None if args.render is None else args.render / f"{video.stem}.mp4"
        try:
            error = _track_video(
                args, _open_video(video), pipeline, config, options, args.out / f"{video.stem}.json", render
            )
        except VideoError as exc:
            error = str(exc)
        if error:
            print(f"error: {error}", file=sys.stderr)
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
    empty for a video file or a directory of frames."""
    from alphapose.images.video import VIDEO_SUFFIXES

    if not path.is_dir():
        return []
    files = sorted(p for p in path.iterdir() if p.is_file())
    if any(p.suffix.lower() in FRAME_SUFFIXES for p in files):
        return []
    return [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]


def _open_video(path: Path) -> Any:
    from alphapose.images.video import FrameSource

    return FrameSource(path)


def _track_video(
    args: argparse.Namespace,
    source: Any,
    pipeline: Any,
    config: Config,
    options: Any,
    out: Path | None,
    render_path: Path | None,
) -> str | None:
    """One video tracked and written; the error that stopped it, or None.

    ``--threshold`` filters what is written and drawn after tracking (:meth:`TrackedFrame.above`).
    """
    from tqdm import tqdm

    from alphapose.cvat.formats import coco_results
    from alphapose.pose.skeletons import oks_sigmas
    from alphapose.tracking import PoseTracker, track_video

    path = source.path
    tracker = PoseTracker(options, oks_sigmas(pipeline.skeleton))
    keypoint_threshold = config.keypoint_thresholds(pipeline.preset)
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
        with _JsonList(out) as results, _VideoRender(render_path, source.fps) as render:
            for tracked in track_video(pipeline, images(), tracker, args.frame_batch):
                frame = pending.popleft()
                kept = tracked.above(args.threshold).persons
                entries = coco_results(
                    [pose for _, pose in kept], threshold=args.threshold, image_id=frame.name
                )
                for entry, (track_id, _) in zip(entries, kept, strict=True):
                    entry["idx"] = track_id
                    results.write(entry)
                render.write(frame.image, kept, pipeline.skeleton, keypoint_threshold)
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


class _JsonList:
    """AlphaPose's results list written one entry at a time: to stdout, or to a file that appears only
    when complete (a failure part-way leaves no truncated results behind)."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.partial = None if out is None else out.with_name(out.name + ".partial")
        self.stream: IO[str] = sys.stdout
        self.count = 0

    def __enter__(self) -> _JsonList:
        if self.out is not None and self.partial is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.stream = self.partial.open("w")
        self.stream.write("[")
        return self

    def write(self, entry: dict[str, Any]) -> None:
        self.stream.write(("," if self.count else "") + "\n  " + json.dumps(entry))
        self.count += 1

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is None:
            self.stream.write("\n]\n" if self.count else "]\n")
        if self.out is None or self.partial is None:
            return
        self.stream.close()
        if kind is None:
            os.replace(self.partial, self.out)
        else:
            self.partial.unlink()


class _VideoRender:
    """The rendered video of ``--render``: skeletons and track ids drawn on each frame."""

    def __init__(self, path: Path | None, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: Any = None

    def __enter__(self) -> _VideoRender:
        return self

    def write(self, image: Any, tracked: Sequence[tuple[int, Any]], skeleton: Any, threshold: Any) -> None:
        if self.path is None:
            return
        from alphapose.cvat.formats import cvat_skeletons
        from tools.render import VideoWriter, draw_labels, draw_skeletons

        if self.writer is None:
            self.writer = VideoWriter(self.path, self.fps, (image.shape[1], image.shape[0]))
        drawn, labels = [], []
        for track_id, pose in tracked:
            drawn += cvat_skeletons([pose], skeleton, threshold=0.0, keypoint_threshold=threshold)
            labels.append((str(track_id), (float(pose.box[0]), float(pose.box[1]))))
        self.writer.write(draw_labels(draw_skeletons(image, drawn), labels))

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.release()


def _call(args: argparse.Namespace) -> int:
    import requests

    payload: dict[str, Any] = {"image": base64.b64encode(args.image.read_bytes()).decode("ascii")}
    if args.threshold:
        payload["threshold"] = args.threshold
    try:
        reply = requests.post(args.url, json=payload, timeout=args.timeout)
    except network_errors() as exc:
        waited = f" within --timeout {args.timeout:g} s" if isinstance(exc, requests.Timeout) else ""
        print(
            f"error: cannot reach the function at {args.url}: {network_problem(exc)}{waited}; check the URL "
            "and that the function runs (make serve locally; nuctl get function shows a deployed one's port)",
            file=sys.stderr,
        )
        return 1
    except requests.RequestException as exc:
        print(f"error: {args.url}: {exc}", file=sys.stderr)
        return 1
    if reply.status_code != 200:
        print(f"error: HTTP {reply.status_code}: {reply.text}", file=sys.stderr)
        return 1
    answer = reply.json()
    print(f"{args.image}: {len(answer)} person(s)", file=sys.stderr)
    if args.render:
        _render(decode_image(args.image.read_bytes(), max_pixels=sys.maxsize), answer, args.render)
    _write_json(answer, args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    return http.serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        handler=args.handler,
        max_body_size=args.max_body_size,
        availability_timeout=args.worker_availability_timeout,
        event_timeout=args.event_timeout,
    )


def _render_path(target: Path, image: Path) -> Path:
    """``target`` itself when it names an image file, else ``<target>/<image stem>.png``."""
    return target if target.suffix.lower() in IMAGE_SUFFIXES else target / f"{image.stem}.png"


def _render(image: Any, skeletons: list[dict[str, Any]], path: Path) -> None:
    from tools.render import draw_skeletons, save_rgb

    save_rgb(path, draw_skeletons(image, skeletons))
    print(f"rendered {path}", file=sys.stderr)


def _write_json(data: Any, out: Path | None) -> None:
    text = json.dumps(data, indent=2)
    if out is None:
        print(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
