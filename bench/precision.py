"""fp32 against a reduced precision on the same machine: network speed side by side, and agreement.

Speed: each network (the detector at two input sizes, the pose network on a batch of crops) runs in
fp32, with converted weights and under autocast, in turns, so a slow spell of a shared machine hits all
three alike. Agreement: the same images and boxes through an fp32 pipeline and a reduced-precision one;
how far the boxes and keypoints move (pixels, median and max), how many persons each keeps, and the
heatmaps' difference relative to their spread. Random weights amplify any rounding through the depth of
the network, so the run also measures the fp32 network on crops rounded to the reduced precision: the
part of the disagreement that comes from rounding the input alone.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from alphapose.engines.precision import (
    CPU_UNIT_FLAGS,
    Precision,
    cpu_flags,
    missing_cpu_units,
    resolve_precision,
)
from alphapose.pipeline import PosePipeline
from alphapose.structures import Pose
from bench.measure import measure_interleaved
from bench.stages import Plan, latency_table
from bench.workloads import IMAGE_SIZES, PERSON_COUNTS, person_boxes, synthetic_photo

DETECTOR_SIZES = (608, 320)
POSE_BATCH = 8


def skip_reason(precision: Precision) -> str | None:
    """Why this machine does not measure ``precision`` (no units for it), or None."""
    problem = missing_cpu_units(precision)
    if problem is None:
        return None
    return f"not measured: this CPU has none of {', '.join(CPU_UNIT_FLAGS[precision.name])}"


def with_precision(pipeline: PosePipeline, precision: Precision) -> PosePipeline:
    """A copy of ``pipeline`` whose two networks run in ``precision``; the pipeline's own networks must
    hold float32 weights (``auto`` or ``fp32``) and are left as they are."""
    if pipeline.precision.mode == "converted":
        raise ValueError(f"the networks are already converted to {pipeline.precision.name}")
    other = copy.copy(pipeline)
    other.detector = copy.copy(pipeline.detector)
    other.detector.model = precision.prepare(copy.deepcopy(pipeline.detector.model))
    other.pose_model = precision.prepare(copy.deepcopy(pipeline.pose_model))
    other.precision = precision
    return other


def forwards(
    fp32: PosePipeline,
    reduced: PosePipeline,
    repeats: int,
    warmup: int,
    detector_sizes: tuple[int, ...] = DETECTOR_SIZES,
) -> list[dict[str, Any]]:
    """Each network in fp32 and in the reduced precision (on a CPU both with converted weights and under
    autocast, to show why the pipeline converts), timed in turns."""
    device = fp32.device
    image = synthetic_photo(*IMAGE_SIZES[-1])
    rows = []
    for size in detector_sizes:
        inputs = fp32.detector.family.prepare([image], size, device)[0]
        models = _detector_at(fp32, size), _detector_at(reduced, size)
        rows.append(_row(f"detector {size}", models, inputs, reduced.precision, repeats, warmup))
    crops = fp32.crops(image, person_boxes(*IMAGE_SIZES[-1], POSE_BATCH)[0])[0]
    models = fp32.pose_model, reduced.pose_model
    rows.append(_row(f"pose network, {POSE_BATCH} crops", models, crops, reduced.precision, repeats, warmup))
    return rows


def _detector_at(pipeline: PosePipeline, size: int) -> nn.Module:
    """The pipeline's detector network, at input ``size`` (the weights do not depend on it)."""
    model = pipeline.detector.model
    if getattr(model, "input_size", size) == size:
        return model
    resized = copy.copy(model)
    resized.input_size = size
    return resized


def _row(
    network: str,
    models: tuple[nn.Module, nn.Module],
    inputs: torch.Tensor,
    precision: Precision,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    fp32_model, reduced_model = models

    def run(model: nn.Module, context: Callable[[], Any]) -> torch.Tensor:
        with torch.inference_mode(), context():
            return model(inputs)

    autocast = Precision(precision.name, "autocast", precision.device_type).autocast
    works = {"fp32": partial(run, fp32_model, contextlib.nullcontext)}
    if precision.mode == "converted":
        works[f"{precision.name} weights"] = partial(run, reduced_model, contextlib.nullcontext)
    works[f"{precision.name} autocast"] = partial(run, fp32_model, autocast)
    timings = measure_interleaved(works, repeats, warmup, inputs.device)
    reference = timings["fp32"].median_ms
    return {
        "network": network,
        "timings": {key: timing.as_dict() for key, timing in timings.items()},
        "ratio_to_fp32": {key: round(timing.median_ms / reference, 3) for key, timing in timings.items()},
    }


def agreement(
    fp32: PosePipeline,
    reduced: PosePipeline,
    image_sizes: tuple[tuple[int, int], ...] = IMAGE_SIZES,
    person_counts: tuple[int, ...] = PERSON_COUNTS,
    heatmap_crops: int = POSE_BATCH,
) -> dict[str, Any]:
    """How far ``reduced`` moves boxes and keypoints from ``fp32`` on the benchmark's images and boxes.

    Boxes come from whole-pipeline runs on each image; keypoints from those runs and from the pose stage
    on the benchmark's fixed person boxes (1, 5 and 20 per image). A person is matched with the other
    pipeline's person with the nearest box. The input-rounding floor: the fp32 networks on inputs first
    rounded to the reduced dtype.
    """
    dtype = reduced.precision.dtype
    rounded = copy.copy(fp32)
    rounded.pose_model = _RoundedInput(fp32.pose_model, dtype)
    box_px: list[float] = []
    keypoint_px: list[np.ndarray] = []
    floor_px: list[np.ndarray] = []
    kept = {"fp32": 0, reduced.precision.name: 0, "matched": 0}
    for index, size in enumerate(image_sizes):
        image = synthetic_photo(*size, seed=index)
        runs = [(fp32(image), reduced(image), box_px, keypoint_px)]
        for count in person_counts:
            boxes, scores = person_boxes(*size, count, seed=count)
            reference = fp32.estimate(image, boxes, scores)
            runs.append((reference, reduced.estimate(image, boxes, scores), None, keypoint_px))
            runs.append((reference, rounded.estimate(image, boxes, scores), None, floor_px))
        for expected, actual, boxes_out, keypoints_out in runs:
            if keypoints_out is keypoint_px:
                kept["fp32"] += len(expected)
                kept[reduced.precision.name] += len(actual)
            for pose, other in _matches(expected, actual):
                if keypoints_out is keypoint_px:
                    kept["matched"] += 1
                if boxes_out is not None:
                    boxes_out.append(float(np.abs(pose.box - other.box).max()))
                keypoints_out.append(np.linalg.norm(pose.keypoints - other.keypoints, axis=1))
    return {
        "persons_kept": kept,
        "box_px": _spread(np.array(box_px)),
        "keypoint_px": _spread(np.concatenate(keypoint_px)),
        "keypoint_px_input_rounding_only": _spread(np.concatenate(floor_px)),
        "heatmap_relative_difference": heatmap_difference(fp32, reduced, image_sizes[-1], heatmap_crops),
    }


def heatmap_difference(
    fp32: PosePipeline, reduced: PosePipeline, size: tuple[int, int], crops: int = POSE_BATCH
) -> float:
    """Median over heatmaps of rms(reduced - fp32) / std(fp32): 0 is exact, about 1.4 is unrelated."""
    batch = fp32.crops(synthetic_photo(*size), person_boxes(*size, crops)[0])[0]
    expected = fp32.heatmaps(batch).flatten(2)
    actual = reduced.heatmaps(batch).flatten(2)
    rms = (actual - expected).pow(2).mean(-1).sqrt()
    return round(float((rms / expected.std(-1)).median()), 4)


def _matches(expected: list[Pose], actual: list[Pose]) -> list[tuple[Pose, Pose]]:
    """Each expected person with the actual person whose box is nearest (largest coordinate difference)."""
    if not actual:
        return []
    pairs = []
    for pose in expected:
        nearest = min(actual, key=lambda other: float(np.abs(pose.box - other.box).max()))
        pairs.append((pose, nearest))
    return pairs


def _spread(values: np.ndarray) -> dict[str, float | int]:
    if values.size == 0:
        return {"median": 0.0, "max": 0.0, "count": 0}
    return {
        "median": round(float(np.median(values)), 3),
        "max": round(float(values.max()), 3),
        "count": values.size,
    }


class _RoundedInput(nn.Module):
    """A network fed its input rounded to ``dtype`` and back: fp32 arithmetic on reduced-precision input."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs.to(self.dtype).float())


def compare(pipeline: PosePipeline, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """The results JSON's ``precision`` part for a pipeline built with ``auto``.

    On a CPU (fp32) the other precision is bf16, measured only where the CPU has the units for it (else
    the reason is recorded); on CUDA (fp16 autocast) it is fp32. Either way: the network forwards side by
    side, the agreement of the reduced precision with fp32, and the latency table of the other pipeline.
    """
    main = pipeline.precision
    cpu = pipeline.device.type == "cpu"
    units = sorted(cpu_flags() & {flag for flags in CPU_UNIT_FLAGS.values() for flag in flags})
    result: dict[str, Any] = {"main": main.describe(), "cpu_units": units if cpu else None}
    fp32 = with_precision(pipeline, resolve_precision("fp32", pipeline.device))
    reduced = with_precision(pipeline, resolve_precision("bf16", pipeline.device)) if cpu else pipeline
    other = reduced if cpu else fp32
    result["other"] = other.precision.describe()
    reason = skip_reason(reduced.precision) if cpu else None
    if reason:
        log(f"{reduced.precision.name}: {reason}")
        return result | {"skipped": reason}
    log(f"{reduced.precision.describe()} against fp32: network forwards side by side")
    result["forwards"] = forwards(fp32, reduced, plan.repeats, plan.warmup)
    log(f"{reduced.precision.describe()} against fp32: agreement of boxes and keypoints")
    result["agreement"] = agreement(fp32, reduced)
    log(f"{other.precision.describe()}: latency table")
    result["latency"] = latency_table(other, plan, log)
    return result
