"""``python -m tools evaluate``: COCO keypoint AP of the pipeline on an annotated image set.

    python -m tools evaluate --annotations person_keypoints_val2017.json --images val2017
        [--detections test_det_yolo.json | --gt-boxes] [--out results.json] [--limit N]
        [--evaluator pycocotools|faster-coco-eval] [--compare SETTING=VALUE ...] [--restart]
        [pipeline options: --preset, --detector, --precision, --flip, ...]

Person boxes come from the pipeline's detector (default), from a detections file in AlphaPose's
``test_det_yolo.json`` format (pose NMS as after the detector), or from the annotations (``--gt-boxes``:
the pose network alone, one pose per labelled person and no pose NMS, as the official validation).
Results are written per image to ``OUT.partial`` (each run's, kept until every run is written) and a
rerun of the same command goes on from there; the finished ``OUT`` is AlphaPose's results JSON.
``--compare precision=bf16`` runs a second configuration on the same images and reports the AP
difference and how far the keypoints moved.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from alphapose.cvat.errors import ConfigError
from alphapose.cvat.formats import coco_results
from alphapose.cvat.settings import FLAGS, Config, add_setting_flags, setting_flags
from alphapose.errors import ImageError, WeightsError
from alphapose.evaluation import (
    EVALUATORS,
    AnnotationError,
    GroundTruth,
    PartialResults,
    ResumeError,
    check_evaluator,
    evaluate,
    keypoint_displacement,
    load_detections,
    load_ground_truth,
)
from alphapose.pose.presets import PosePreset
from alphapose.pose.skeletons import Skeleton
from alphapose.structures import Pose
from tools.errors import CommandError, check_threshold, interrupted
from tools.output import check_writable, unwritable

PRINTED_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR")


class Estimator(Protocol):
    """What an evaluation runs: the pipeline (:class:`alphapose.PosePipeline`) or a stand-in."""

    skeleton: Skeleton

    def __call__(self, image: np.ndarray) -> list[Pose]: ...

    def estimate(self, image: np.ndarray, boxes: Any, scores: Any, *, nms: bool = True) -> list[Pose]: ...


@dataclass(frozen=True)
class Boxes:
    """Where the person boxes come from: ``detector``, ``detections`` (with the file's boxes) or ``gt``."""

    source: str
    detections: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    detections_file: str | None = None

    def poses(self, pipeline: Estimator, image: np.ndarray, image_id: int, truth: GroundTruth) -> list[Pose]:
        if self.source == "detector":
            return pipeline(image)
        if self.source == "gt":
            boxes = truth.person_boxes(image_id)
            return pipeline.estimate(image, boxes, np.ones(len(boxes), dtype=np.float32), nms=False)
        assert self.detections is not None
        boxes, scores = self.detections.get(image_id, (np.zeros((0, 4)), np.zeros(0)))
        return pipeline.estimate(image, boxes, scores)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--annotations",
        type=Path,
        required=True,
        help="COCO keypoint annotation file (COCO, Halpe, WholeBody)",
    )
    parser.add_argument(
        "--images", type=Path, required=True, help="directory of the annotation file's images"
    )
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument(
        "--detections", type=Path, help="person boxes from this file (AlphaPose's test_det_yolo.json format)"
    )
    boxes.add_argument(
        "--gt-boxes", action="store_true", help="person boxes from the annotations: the pose network alone"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("alphapose-results.json"), help="results JSON (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, help="only the first N images (by image id)")
    parser.add_argument("--evaluator", choices=EVALUATORS, default="pycocotools", help="default: %(default)s")
    parser.add_argument(
        "--compare",
        action="append",
        metavar="SETTING=VALUE",
        help="also run with this setting changed (repeatable), e.g. precision=bf16 or detector=yolox-s",
    )
    parser.add_argument("--restart", action="store_true", help="discard partial results of an earlier run")
    parser.add_argument("--threshold", type=float, default=0.0, help="minimum person (box) score")
    add_setting_flags(parser)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit {args.limit}: must be at least 1")
    check_threshold("--threshold", args.threshold)
    for out in [args.out] + ([_compare_path(args.out)] if args.compare else []):
        check_writable("--out", out)  # found now, not when the results of a run of hours are written
    flags = setting_flags(args)
    try:
        check_evaluator(args.evaluator)
    except ImportError as exc:
        raise CommandError(f"--evaluator {args.evaluator}: {exc}") from None
    try:
        truth = load_ground_truth(args.annotations)
    except AnnotationError as exc:
        raise CommandError(f"--annotations: {exc}") from None
    try:
        boxes = _boxes(args, truth)
    except AnnotationError as exc:
        raise CommandError(f"--detections: {exc}") from None
    images = truth.images[: args.limit]
    # Everything that can be wrong is found before the first image runs: a run can take hours.
    try:
        compared, spelled = _compare_flags(args.compare or [])
        paths = _image_paths(truth, images, args.images)
        configs = [Config.from_env(flags=flags)]
        if compared:
            configs.append(Config.from_env(flags={**flags, **compared}, spelled=spelled))
        for config in configs:
            _check_keypoints(config.options.pose_preset, truth)
        pipelines = [_load(config) for config in configs]
    except (AnnotationError, ConfigError, WeightsError) as exc:
        raise CommandError(str(exc)) from None
    outs = [args.out] + ([_compare_path(args.out)] if compared else [])
    if args.restart:  # every run's, before the first: an interrupted first run must not leave the second's
        for out in outs:
            discard_partial(out)
    reports, runs = [], []
    try:
        for config, pipeline, out in zip(configs, pipelines, outs, strict=True):
            try:
                results = predict(
                    pipeline, truth, images, paths, boxes, out, _settings(config, boxes, truth, args),
                    threshold=args.threshold, max_pixels=config.max_pixels, progress=True,
                )  # fmt: skip
            except (ResumeError, AnnotationError) as exc:
                raise CommandError(str(exc)) from None
            try:
                write_results(results, out)
            except OSError as exc:
                raise unwritable("--out", out, exc) from None
            print(f"wrote {out} ({len(results)} poses on {len(images)} images)", file=sys.stderr)
            reports.append(evaluate(truth, results, evaluator=args.evaluator))
            runs.append(results)
    except KeyboardInterrupt:
        kept = " and ".join(str(partial_file(out)) for out in outs if partial_file(out).exists())
        again = "the same command without --restart" if args.restart else "the same command"
        return interrupted(f"the images done are in {kept}; run {again} to go on from them")
    for out in outs:  # kept until now: a rerun after an interrupted second run goes on from both
        partial_file(out).unlink(missing_ok=True)
    labels = ["this run"] + (["--compare " + " ".join(args.compare)] if compared else [])
    print(format_report(reports, labels))
    if compared:
        print(format_displacement(keypoint_displacement(*runs)))
    return 0


def _load(config: Config) -> Estimator:
    """The pipeline of ``config``, after the process-wide start-up steps: the one place the command
    imports the model, so its parser and the checks of its flags run without PyTorch."""
    from alphapose.cvat.predictor import Predictor, start_process

    start_process(config)
    return Predictor.load(config).pipeline


def predict(
    pipeline: Estimator,
    truth: GroundTruth,
    images: Sequence[dict[str, Any]],
    paths: Sequence[Path],
    boxes: Boxes,
    out: Path,
    settings: dict[str, Any],
    *,
    threshold: float = 0.0,
    max_pixels: int = sys.maxsize,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """The pipeline's results on ``images`` (AlphaPose's results entries, integer image ids), in the
    images' order, resuming from ``OUT.partial`` when it holds a run of the same ``settings``."""
    partial_path = partial_file(out)
    try:
        partial = PartialResults(partial_path, settings)
    except OSError as exc:
        raise _unusable(partial_path, exc) from None
    try:
        todo = [
            (image, path)
            for image, path in zip(images, paths, strict=True)
            if image["id"] not in partial.done
        ]
        if len(todo) < len(images):
            print(f"resuming {partial_path}: {len(images) - len(todo)} images done", file=sys.stderr)
        for image, path in _progress(todo, progress):
            pixels = _read(path, image, truth, max_pixels)
            poses = boxes.poses(pipeline, pixels, image["id"], truth)
            partial.add(image["id"], coco_results(poses, threshold=threshold, image_id=image["id"]))
    finally:
        partial.close()
    return [result for image in images for result in partial.done[image["id"]]]


def write_results(results: list[dict[str, Any]], out: Path) -> None:
    """The finished results JSON. Its partial file stays: the command removes every run's once all are
    written, so that a rerun after an interrupted --compare run need not run the first again."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(results) + "\n")
    temporary.replace(out)


def partial_file(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def discard_partial(out: Path) -> None:
    """``--restart``: the partial results of ``out`` go."""
    path = partial_file(out)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise _unusable(path, exc) from None


def _unusable(path: Path, exc: OSError) -> CommandError:
    """A partial file that cannot be read or removed: a directory in its place, a file it may not read."""
    return CommandError(f"cannot use {path}: {exc.strerror or exc}; remove it, or choose another --out", 1)


def format_report(reports: Sequence[dict[str, dict[str, float]]], labels: Sequence[str]) -> str:
    """The printed table: one row per run and part, and with two runs their difference."""
    width = max(len(label) for label in [*labels, "difference"]) + 2
    lines = ["run".ljust(width) + "part".ljust(11) + "".join(f"{name:>8}" for name in PRINTED_STATS)]
    for label, report in zip(labels, reports, strict=True):
        for part, stats in report.items():
            lines.append(
                label.ljust(width) + part.ljust(11) + "".join(f"{stats[n]:8.3f}" for n in PRINTED_STATS)
            )
    if len(reports) == 2:
        for part in reports[0]:
            first, second = reports[0][part], reports[1][part]
            row = "".join(f"{second[n] - first[n]:+8.3f}" for n in PRINTED_STATS)
            lines.append("difference".ljust(width) + part.ljust(11) + row)
    return "\n".join(lines)


def format_displacement(per_image: Sequence[dict[str, Any]]) -> str:
    """How far the second run's keypoints lie from the first's: over the paired persons of every image,
    the mean, the median of the per-image means and the largest, and the persons left unpaired."""
    means = [entry["mean_px"] for entry in per_image if entry["mean_px"] is not None]
    largest = max((entry["max_px"] for entry in per_image if entry["max_px"] is not None), default=None)
    unpaired = sum(sum(entry["persons"]) - 2 * entry["pairs"] for entry in per_image)
    if not means:
        return f"keypoint displacement: no person paired on {len(per_image)} images ({unpaired} unpaired)"
    return (
        f"keypoint displacement over {len(means)} images, px: mean of per-image means {np.mean(means):.3f}, "
        f"median {np.median(means):.3f}, largest {largest:.3f}; {unpaired} persons unpaired"
    )


def _compare_flags(items: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The settings of ``--compare SETTING=VALUE ...`` as setting flags, and how the user typed each
    (``--compare detector``), for :meth:`Config.from_env` to name in its errors."""
    allowed = {flag[2:]: flag for flag in FLAGS}
    flags, spelled = {}, {}
    for item in items:
        typed, _, value = item.partition("=")
        name = typed.strip().removeprefix("--").replace("_", "-")
        if name not in allowed or not value.strip():
            raise ConfigError(
                f"invalid --compare {item!r}: expected SETTING=VALUE with SETTING one of {', '.join(allowed)}"
            )
        flags[allowed[name]] = value.strip()
        spelled[allowed[name]] = f"--compare {typed.strip()}"
    return flags, spelled


def _compare_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}-compare{out.suffix or '.json'}")


def _boxes(args: argparse.Namespace, truth: GroundTruth) -> Boxes:
    if args.gt_boxes:
        return Boxes("gt")
    if args.detections:
        return Boxes("detections", load_detections(args.detections, truth), str(args.detections))
    return Boxes("detector")


def _image_paths(truth: GroundTruth, images: Sequence[dict[str, Any]], directory: Path) -> list[Path]:
    """Every image's file, all checked before anything runs: a long run should not stop at image 4000."""
    if not directory.is_dir():
        raise AnnotationError(f"--images {directory}: no such directory")
    paths = [directory / Path(image["file_name"]).name for image in images]
    missing = [(image, path) for image, path in zip(images, paths, strict=True) if not path.is_file()]
    if missing:
        image, path = missing[0]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise AnnotationError(
            f"missing image {path} (file_name of image id {image['id']} in {truth.path}){more}; "
            "--images must name the directory holding the annotated images"
        )
    return paths


def _read(path: Path, image: dict[str, Any], truth: GroundTruth, max_pixels: int) -> np.ndarray:
    from alphapose.images.decode import read_image_file

    try:
        pixels = read_image_file(path, max_pixels=max_pixels)
    except ImageError as exc:
        raise AnnotationError(str(exc)) from None
    height, width = pixels.shape[:2]
    if (width, height) != (image["width"], image["height"]):
        raise AnnotationError(
            f"{path} is {width}x{height} but {truth.path} says {image['width']}x{image['height']} "
            f"(image id {image['id']}): not the annotated image"
        )
    return pixels


def _check_keypoints(preset: PosePreset, truth: GroundTruth) -> None:
    """The preset's keypoints must be the annotations' or begin with them (Halpe on COCO's 17)."""
    skeleton, count = preset.skeleton, truth.num_keypoints
    if count == 17 and skeleton.keypoints[:17] == _coco_names(truth):
        return
    if count != 17 and skeleton.num_keypoints == count:
        return
    if count == 17 and skeleton.num_keypoints >= 17:  # the count fits: the names do not
        names = _coco_names(truth)
        pairs = enumerate(zip(skeleton.keypoints[:17], names, strict=True))
        index, ours, theirs = next((i, a, b) for i, (a, b) in pairs if a != b)
        order = " (the same names in another order)" if set(names) == set(skeleton.keypoints[:17]) else ""
        raise AnnotationError(
            f"{truth.path} names its 17 keypoints differently from preset {preset.name}{order}: keypoint "
            f"{index + 1} is {theirs!r} there and {ours!r} in the preset ({skeleton.name}: "
            f"{', '.join(skeleton.keypoints[:17])}). If they are the same points, rename them in the file's "
            'category "keypoints" (and reorder its annotations\' keypoints to match); otherwise choose a '
            "preset of the file's keypoint set (--preset)"
        )
    raise AnnotationError(
        f"preset {preset.name} gives {skeleton.num_keypoints} keypoints ({skeleton.name}), which "
        f"{truth.path} ({count} keypoints) cannot score; choose a preset of that keypoint set (--preset)"
    )


def _coco_names(truth: GroundTruth) -> tuple[str, ...]:
    return tuple(truth.dataset["categories"][0]["keypoints"])


def _settings(config: Config, boxes: Boxes, truth: GroundTruth, args: argparse.Namespace) -> dict[str, Any]:
    """What a partial results file must have been produced with to be continued
    (:meth:`Config.model_record` for the model)."""
    return {
        "annotations": str(truth.path.resolve()),
        "boxes": boxes.source,
        "detections": boxes.detections_file,
        "threshold": args.threshold,
        **config.model_record(),
    }


def _progress(items: list[Any], enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="image", file=sys.stderr, disable=None)
