"""Every detector of the table on the same requests: its own time, end to end, and its FLOP rate.

For each detector (YOLOv3-SPP, YOLOX-s/m/l/x) a pipeline is built with it and the default pose preset,
and the same three requests as the latency table are answered (640x480 with 1 person, 1280x720 with 5,
1920x1080 with 20; the person boxes are fixed, as there). The detector column is the whole detector
stage of one 640x480 image (letterbox, forward, person selection, boxes back in image pixels); the FLOP
rate divides the forward's FLOPs (counted once) by the forward alone. The forwards of all detectors
and the end-to-end requests are timed in turns, so a slow spell of the machine hits all of them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alphapose.detection import FAMILIES
from alphapose.detection.detectors import DETECTORS
from alphapose.pipeline import PosePipeline
from bench.measure import count_flops, measure_interleaved
from bench.stages import Plan, answer, autocast
from bench.workloads import IMAGE_SIZES, person_boxes, request_image, synthetic_photo

# (image size, person count) of the end-to-end requests: one per image size, as in the README summary
REQUESTS = tuple(zip(IMAGE_SIZES, (1, 5, 20), strict=True))


def detector_rows(
    weights: Path, preset: str, device: str, plan: Plan, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One row per detector whose weights are in ``weights``."""
    pipelines = {
        name: PosePipeline.from_weights_dir(weights, preset=preset, device=device, detector=name)
        for name, spec in DETECTORS.items()
        if (weights / spec.weights.name).is_file()
    }
    if not pipelines:
        return []
    device = next(iter(pipelines.values())).device
    images = {size: synthetic_photo(*size, seed=i) for i, size in enumerate(IMAGE_SIZES)}
    small = images[IMAGE_SIZES[0]]
    forwards, detectors, flops = {}, {}, {}
    for name, pipeline in pipelines.items():
        family = FAMILIES[DETECTORS[name].family]
        inputs, _ = family.prepare([small], pipeline.detector.input_size, pipeline.device)
        flops[name] = count_flops(pipeline.detector.model, inputs)
        forwards[name] = partial(_forward, pipeline, inputs)
        detectors[name] = partial(_detect, pipeline, small)
    log("detectors: forward alone, in turns")
    forward_times = measure_interleaved(forwards, plan.repeats, plan.warmup, device)
    log("detectors: detector stage, in turns")
    detector_times = measure_interleaved(detectors, plan.repeats, 0, device)
    rows = {
        name: {
            "detector": name,
            "input": pipeline.detector.input_size,
            "gflop": round(flops[name] / 1e9, 2),
            "forward_ms": round(forward_times[name].median_ms, 3),
            "detector_ms": round(detector_times[name].median_ms, 3),
            "gflop_per_s": round(flops[name] / forward_times[name].median_ms / 1e6, 1),
            "end_to_end_ms": {},
        }
        for name, pipeline in pipelines.items()
    }
    for size, count in REQUESTS:
        label = f"{size[0]}x{size[1]}"
        log(f"detectors: end to end, {label} with {count} persons, in turns")
        payload = request_image(images[size])
        boxes, scores = person_boxes(*size, count, seed=count)
        works = {name: partial(answer, p, payload, boxes, scores) for name, p in pipelines.items()}
        times = measure_interleaved(works, plan.end_to_end_repeats, 1, device)
        for name, timing in times.items():
            rows[name]["end_to_end_ms"][f"{label}/{count}"] = round(timing.median_ms, 3)
    return list(rows.values())


def _forward(pipeline: PosePipeline, inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(), autocast(pipeline.device):
        return pipeline.detector.model(inputs)


def _detect(pipeline: PosePipeline, image: np.ndarray) -> object:
    with autocast(pipeline.device):
        return pipeline.detector(image)
