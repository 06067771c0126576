"""Per-stage and end-to-end latency of one request, for each image size and person count.

The request path is: decode the base64 JPEG -> letterbox -> detector forward -> detector post-processing
(person filter, NMS, boxes back to image pixels) -> crops -> pose forward -> heatmap decoding -> pose NMS
-> CVAT JSON. The detector runs on a fixed-size square (the letterbox), so its forward pass does not
depend on the image size; the pose network's input does not either, so its forward pass depends only on
the person count. Each of those is measured once and reused in every row; every other stage is measured
per image size and person count.

End to end is measured for real (the handler's work on a fixed person count: decode, detect, pose stage
on the given boxes, format) and also composed as the sum of the stages. It is timed in turns with the
two network forwards alone on the same inputs, so the overhead of everything around the networks is a
ratio of two figures from the same moments of the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from alphapose.cvat.formats import cvat_skeletons
from alphapose.cvat.request import decode_base64, decode_image
from alphapose.detection import PersonDetector
from alphapose.detection.yolov3 import Letterbox, letterbox, network_input, select_persons
from alphapose.pipeline import PosePipeline
from alphapose.pose.nms import pose_nms
from alphapose.pose.presets import PosePreset
from alphapose.pose.transforms import decode_outputs
from alphapose.structures import Pose
from bench.measure import Timing, measure, measure_interleaved
from bench.workloads import IMAGE_SIZES, PERSON_COUNTS, person_boxes, request_image, synthetic_photo

MAX_PIXELS = 100_000_000
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
