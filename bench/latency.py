"""``python -m bench``'s tables: latency stage by stage, the pose network of every preset, every detector.

Stages: the request path is: decode the base64 JPEG -> letterbox -> detector forward -> detector
post-processing (person filter, NMS, boxes back to image pixels) -> crops -> pose forward -> heatmap
decoding -> pose NMS -> CVAT JSON. The detector runs on a fixed-size square (the letterbox), so its
forward pass does not depend on the image size; the pose network's input does not either, so its forward
pass depends only on the person count. Each of those is measured once and reused in every row; every
other stage is measured per image size and person count. End to end is measured for real (the handler's
work on a fixed person count: decode, detect, pose stage on the given boxes, format) and also composed as
the sum of the stages. It is timed in turns with the two network forwards alone on the same inputs, so
the overhead of everything around the networks is a ratio of two figures from the same moments of the run.

Presets: each preset gets synthetic official-format weights, loaded by ``load_pose_model`` with folded
batch norms and channels-last weights (what :meth:`PosePipeline.from_weights_dir` does), and one forward
of a batch of crops is timed, the presets in turns: the pipeline's CPU forward batch on a CPU,
:data:`GPU_BATCH` on CUDA. The detector is the same for every preset and is not part of these figures.

Detectors: for each detector of the table a pipeline is built with it and the default pose preset, and
the same three requests as the latency table are answered. The detector column is the whole detector
stage of one 640x480 image (letterbox, forward, person selection, boxes back in image pixels); the FLOP
rate divides the forward's FLOPs (counted once) by the forward alone. The forwards of all detectors and
the end-to-end requests are timed in turns, so a slow spell of the machine hits all of them alike.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alphapose.cvat.formats import cvat_skeletons
from alphapose.cvat.request import decode_base64, decode_image
from alphapose.detection.detectors import DETECTORS
from alphapose.detection.person_detector import FAMILIES, PersonDetector
from alphapose.detection.yolov3 import Letterbox, letterbox, network_input, select_persons
from alphapose.pipeline import CPU_FORWARD_BATCH, Pose, PosePipeline
from alphapose.pose.nms import pose_nms
from alphapose.pose.presets import PRESETS, PosePreset
from alphapose.pose.transforms import decode_outputs
from alphapose.weights.load import load_pose_model
from bench.measure import (
    IMAGE_SIZES,
    PERSON_COUNTS,
    Timing,
    count_flops,
    detector_flops,
    measure,
    measure_interleaved,
    request_image,
)
from tools.synthetic_images import person_boxes, synthetic_photo
from tools.synthetic_weights import synthetic_pose_model

MAX_PIXELS = 100_000_000
GPU_BATCH = 64  # the presets' pose batch on CUDA
SEED = 0  # of the presets' synthetic weights and crops
# (image size, person count) of the detectors' end-to-end requests: one per image size
REQUESTS = tuple(zip(IMAGE_SIZES, (1, 5, 20), strict=True))
STAGES = (
    "image_decode",
    "letterbox",
    "detector_forward",
    "detector_postprocess",
    "crops",
    "pose_forward",
    "heatmap_decode",
    "pose_nms",
    "format_cvat",
)


@dataclass(frozen=True)
class Plan:
    """How often to run each piece of work."""

    repeats: int  # timed runs of a stage
    warmup: int  # untimed runs before them
    end_to_end_repeats: int  # timed runs of a whole request (the expensive measurement)


def autocast(device: torch.device) -> torch.autocast:
    """The ``auto`` precision policy: fp16 autocast on CUDA, plain fp32 on the CPU."""
    return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=device.type == "cuda")


def detector_forward(pipeline: PosePipeline, inputs: torch.Tensor) -> torch.Tensor:
    """The detector network on one image's uint8 letterbox; predictions stay on the device, as in
    :class:`PersonDetector`."""
    with torch.inference_mode(), pipeline.precision.autocast():
        return pipeline.detector.model(network_input(inputs[None].to(pipeline.device)))


def detector_postprocess(
    detector: PersonDetector, predictions: torch.Tensor, placement: Letterbox
) -> torch.Tensor:
    """Person filter, NMS and boxes back in image pixels, on one image's predictions."""
    boxes, _ = select_persons(predictions, detector.confidence, detector.nms_threshold)
    return placement.to_image(boxes)


def decode_request_image(payload: str) -> np.ndarray:
    return decode_image(decode_base64(payload), max_pixels=MAX_PIXELS)


def format_cvat(poses: list[Pose], preset: PosePreset) -> str:
    """The answer body CVAT receives, with the function's default (the preset's) keypoint thresholds."""
    return json.dumps(
        cvat_skeletons(poses, preset.skeleton, threshold=0.0, keypoint_threshold=preset.keypoint_thresholds)
    )


def merge_poses(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, preset: PosePreset
) -> list[Any]:
    return pose_nms(
        torch.from_numpy(boxes), torch.from_numpy(keypoints), torch.from_numpy(scores), params=preset.nms
    )


def decode(
    pipeline: PosePipeline, outputs: torch.Tensor, crop_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The preset's decoding: heatmaps, integral regression or the combined split."""
    return decode_outputs(outputs, crop_boxes, pipeline.preset.regression_joints)


def network_forwards(pipeline: PosePipeline, squares: torch.Tensor, crops: torch.Tensor) -> None:
    """The two networks alone, as a request runs them: the floor under the end-to-end time."""
    detector_forward(pipeline, squares)
    pipeline.heatmaps(crops)


def answer(pipeline: PosePipeline, payload: str, boxes: np.ndarray, scores: np.ndarray) -> str:
    """What the function does for one request, with the person boxes fixed: decode, detect (its boxes
    are dropped), pose stage on ``boxes``, CVAT JSON."""
    image = decode_request_image(payload)
    with pipeline.precision.autocast():
        pipeline.detector(image)
    return format_cvat(pipeline.estimate(image, boxes, scores), pipeline.preset)


def latency_table(pipeline: PosePipeline, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Every stage for every image size and person count, plus end to end measured and composed."""
    device, detector = pipeline.device, pipeline.detector

    def timed(work: Callable[[], object]) -> Timing:
        return measure(work, plan.repeats, plan.warmup, device)

    images = {size: synthetic_photo(*size, seed=i) for i, size in enumerate(IMAGE_SIZES)}
    payloads = {size: request_image(image) for size, image in images.items()}

    log("detector forward")
    squares = letterbox(images[IMAGE_SIZES[-1]], detector.input_size)[0]
    detector_time = timed(partial(detector_forward, pipeline, squares))
    pose_times, decode_times = {}, {}
    reference = images[IMAGE_SIZES[1]]
    for count in PERSON_COUNTS:
        log(f"pose forward, {count} persons")
        batch, crop_boxes = pipeline.crops(reference, person_boxes(*IMAGE_SIZES[1], count, seed=count)[0])
        pose_times[count] = timed(partial(pipeline.heatmaps, batch))
        decode_times[count] = timed(partial(decode, pipeline, pipeline.heatmaps(batch), crop_boxes))

    rows = []
    for size in IMAGE_SIZES:
        image, payload = images[size], payloads[size]
        name = f"{size[0]}x{size[1]}"
        log(f"{name}: decode, letterbox, detector post-processing")
        squares, placement = letterbox(image, detector.input_size)
        predictions = detector_forward(pipeline, squares)[0]
        per_image = {
            "image_decode": timed(partial(decode_request_image, payload)),
            "letterbox": timed(partial(letterbox, image, detector.input_size)),
            "detector_forward": detector_time,
            "detector_postprocess": timed(partial(detector_postprocess, detector, predictions, placement)),
        }
        for count in PERSON_COUNTS:
            log(f"{name}: {count} persons")
            boxes, scores = person_boxes(*size, count, seed=count)
            batch, crop_boxes = pipeline.crops(image, boxes)
            keypoints, keypoint_scores = decode(pipeline, pipeline.heatmaps(batch), crop_boxes)
            poses = pipeline.estimate(image, boxes, scores)
            timings = per_image | {
                "crops": timed(partial(pipeline.crops, image, boxes)),
                "pose_forward": pose_times[count],
                "heatmap_decode": decode_times[count],
                "pose_nms": timed(partial(merge_poses, boxes, keypoints, keypoint_scores, pipeline.preset)),
                "format_cvat": timed(partial(format_cvat, poses, pipeline.preset)),
            }
            paired = measure_interleaved(
                {
                    "end_to_end": partial(answer, pipeline, payload, boxes, scores),
                    "networks": partial(network_forwards, pipeline, squares, batch),
                    "pose_stage": partial(pipeline.estimate, image, boxes, scores),
                },
                plan.end_to_end_repeats,
                0,
                device,
            )
            end_to_end, networks = paired["end_to_end"], paired["networks"]
            stages_ms = {stage: round(timings[stage].median_ms, 3) for stage in STAGES}
            rows.append(
                {
                    "image": name,
                    "jpeg_kib": round(len(payload) * 3 / 4 / 1024, 1),
                    "persons": count,
                    "poses_after_nms": len(poses),
                    "stages_ms": stages_ms,
                    "composed_ms": round(sum(stages_ms.values()), 3),
                    "pose_stage_ms": round(paired["pose_stage"].median_ms, 3),
                    "end_to_end_ms": round(end_to_end.median_ms, 3),
                    "networks_ms": round(networks.median_ms, 3),
                    "overhead_vs_networks": round(end_to_end.median_ms / networks.median_ms - 1, 4),
                    "timings": {stage: timings[stage].as_dict() for stage in STAGES}
                    | {key: timing.as_dict() for key, timing in paired.items()},
                }
            )
    return {"rows": rows, "detector_input": detector.input_size}


def _pose_forward(model: nn.Module, crops: torch.Tensor, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(), autocast(device):
        return model(crops).float().cpu()


def load_network(name: str, directory: Path, device: torch.device) -> nn.Module:
    """The preset's network on synthetic weights, as the pipeline loads it: folded, channels-last."""
    preset = PRESETS[name]
    path = directory / preset.checkpoint.name
    torch.save(synthetic_pose_model(name, torch.Generator().manual_seed(SEED)).state_dict(), path)
    model = load_pose_model(preset, path, device, fold_batch_norm=True)
    path.unlink()
    return model.to(memory_format=torch.channels_last)


def preset_speeds(device: torch.device, plan: Plan, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """One row per preset: GFLOP per person, ms per batch and per person, persons per second.

    The presets are timed in turns, so a slow spell of a shared machine hits each of them alike.
    """
    batch = CPU_FORWARD_BATCH if device.type == "cpu" else GPU_BATCH
    works, flops = {}, {}
    with tempfile.TemporaryDirectory(prefix="alphapose-bench-presets-") as directory:
        for name, preset in PRESETS.items():
            log(f"loading the pose network of preset {name}")
            model = load_network(name, Path(directory), device)
            height, width = preset.input_size
            crops = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(SEED)) - 0.45
            crops = crops.to(device).contiguous(memory_format=torch.channels_last)
            flops[name] = count_flops(model, crops[:1])
            works[name] = partial(_pose_forward, model, crops, device)
    log("timing the pose network of every preset, in turns")
    timings = measure_interleaved(works, plan.repeats, plan.warmup, device)
    return [
        {
            "preset": name,
            "batch": batch,
            "gflop_per_person": round(flops[name] / 1e9, 3),
            "ms_per_batch": round(timing.median_ms, 3),
            "ms_per_person": round(timing.median_ms / batch, 3),
            "persons_per_s": round(batch / timing.median_ms * 1000, 2),
            "uncounted": "deformable convolutions" if "dcn" in name else None,
            "timing": timing.as_dict(),
        }
        for name, timing in timings.items()
    ]


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
        flops[name] = detector_flops(pipeline.detector.model, name, inputs)
        forwards[name] = partial(_detector_forward_alone, pipeline, inputs)
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


def _detector_forward_alone(pipeline: PosePipeline, inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(), autocast(pipeline.device):
        return pipeline.detector.model(inputs)


def _detect(pipeline: PosePipeline, image: np.ndarray) -> object:
    with autocast(pipeline.device):
        return pipeline.detector(image)
