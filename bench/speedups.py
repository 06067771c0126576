"""Where the time goes and what each optimisation buys: batching, FLOP efficiency, before/after pairs.

* per-person loop vs batched pose stage: the straightforward implementation (one crop, one forward,
  one decode per person) against :meth:`PosePipeline.estimate` on the same boxes;
* pose throughput (persons/s) against batch size;
* achieved GFLOP/s of both networks against a large matmul in their precision (fp32 CPU, fp16 CUDA);
* each optimisation switched off and on in the same run (batch-norm folding, channels-last, batched
  crops, meta-device loading, strict base64, OpenCV JPEG decode, fp16 on CUDA), with the largest
  output difference it causes.
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from alphapose.cvat.request import decode_base64, decode_base64_lenient, decode_image
from alphapose.detection.darknet import Yolo
from alphapose.detection.detectors import DETECTORS
from alphapose.detection.yolov3 import letterbox, network_input
from alphapose.images.decode import decode_with_pillow
from alphapose.pipeline import CPU_FORWARD_BATCH, PosePipeline
from alphapose.pose.nms import pose_nms
from alphapose.pose.transforms import crop_persons, crop_persons_batched, decode_heatmaps
from alphapose.weights.load import load_detector, load_pose_model, read_state_dict
from bench.measure import count_flops, matmul, measure, measure_interleaved
from bench.stages import Plan, autocast, detector_forward
from bench.workloads import person_boxes, request_image, synthetic_photo

LOOP_PERSONS = 8
LOOP_IMAGE = (1280, 720)
CPU_BATCHES = (1, 2, 4, 8, 16)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)


def per_person_loop(pipeline: PosePipeline, image: np.ndarray, boxes: np.ndarray) -> list[Any]:
    """The pose stage written the obvious way: one crop, one forward and one decode per person."""
    keypoints, scores = [], []
    for box in boxes:
        batch, crop_box = pipeline.crops(image, box[None])
        heatmaps = pipeline.heatmaps(batch)
        k, s = decode_heatmaps(heatmaps.numpy(), crop_box)
        keypoints.append(k)
        scores.append(s)
    return pose_nms(
        torch.from_numpy(boxes),
        torch.from_numpy(np.concatenate(keypoints)),
        torch.from_numpy(np.concatenate(scores)),
    )


def loop_vs_batch(pipeline: PosePipeline, plan: Plan) -> dict[str, Any]:
    """Per-person loop against the batched pose stage for ``LOOP_PERSONS`` persons; both on the same
    (optimised) networks, so the ratio is what batching alone buys."""
    image = synthetic_photo(*LOOP_IMAGE, seed=7)
    boxes, scores = person_boxes(*LOOP_IMAGE, LOOP_PERSONS, seed=7)
    looped = per_person_loop(pipeline, image, boxes)
    batched = pipeline.estimate(image, boxes, scores)
    difference = max(
        float(np.abs(a.keypoints.numpy() - b.keypoints).max()) for a, b in zip(looped, batched, strict=True)
    )
    timings = measure_interleaved(
        {
            "loop": partial(per_person_loop, pipeline, image, boxes),
            "batched": partial(pipeline.estimate, image, boxes, scores),
        },
        plan.repeats,
        plan.warmup,
        pipeline.device,
    )
    loop, batch = timings["loop"], timings["batched"]
    return {
        "persons": LOOP_PERSONS,
        "image": f"{LOOP_IMAGE[0]}x{LOOP_IMAGE[1]}",
        "loop": loop.as_dict(),
        "batched": batch.as_dict(),
        "speedup": round(loop.median_ms / batch.median_ms, 3),
        "max_keypoint_difference_px": difference,
    }


def pose_forward(pipeline: PosePipeline, batch: torch.Tensor) -> torch.Tensor:
    """One forward pass of the pose network on the whole batch (no chunking), heatmaps back on the CPU."""
    with torch.inference_mode(), pipeline.precision.autocast():
        return pipeline.pose_model(batch.to(pipeline.device)).float().cpu()


def pose_throughput(pipeline: PosePipeline, batches: tuple[int, ...], plan: Plan) -> list[dict[str, Any]]:
    """Pose network forward (crops in, CPU heatmaps out) in persons per second, for each batch size."""
    image = synthetic_photo(*LOOP_IMAGE, seed=3)
    rows = []
    for size in batches:
        batch, _ = pipeline.crops(image, person_boxes(*LOOP_IMAGE, size, seed=size)[0])
        timing = measure(partial(pose_forward, pipeline, batch), plan.repeats, plan.warmup, pipeline.device)
        rows.append(
            {
                "batch": size,
                "ms_per_batch": round(timing.median_ms, 3),
                "persons_per_s": round(size / timing.median_ms * 1000, 2),
                "timing": timing.as_dict(),
            }
        )
    return rows


def efficiency(pipeline: PosePipeline, plan: Plan) -> dict[str, Any]:
    """Achieved GFLOP/s of the two networks against a large matmul in the precision they run in (fp32 on
    the CPU, fp16 on CUDA). The three are timed in turns, so a slow spell of the machine cannot favour
    one of them."""
    device = pipeline.device
    batch_size = CPU_FORWARD_BATCH if device.type == "cpu" else max(GPU_BATCHES)
    image = synthetic_photo(*LOOP_IMAGE, seed=4)
    crops, _ = pipeline.crops(image, person_boxes(*LOOP_IMAGE, batch_size, seed=4)[0])
    squares = letterbox(image, pipeline.detector.input_size)[0]
    pose_flops = count_flops(pipeline.pose_model, crops[:1].to(device))
    detector_flops = count_flops(pipeline.detector.model, network_input(squares[None].to(device)))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    product, size = matmul(device, dtype)
    timings = measure_interleaved(
        {
            "matmul": product,
            "pose": partial(pose_forward, pipeline, crops),
            "detector": partial(detector_forward, pipeline, squares),
        },
        plan.repeats,
        plan.warmup,
        device,
    )
    ceiling = 2 * size**3 / timings["matmul"].median_ms / 1e6
    pose_gflops = pose_flops * batch_size / timings["pose"].median_ms / 1e6
    detector_gflops = detector_flops / timings["detector"].median_ms / 1e6
    return {
        "matmul": {"size": size, "dtype": str(dtype).removeprefix("torch."), "gflops": round(ceiling, 1)}
        | timings["matmul"].as_dict(),
        "pose_gflop_per_person": round(pose_flops / 1e9, 3),
        "pose_batch": batch_size,
        "pose_gflops": round(pose_gflops, 1),
        "pose_fraction": round(pose_gflops / ceiling, 3),
        "detector_gflop": round(detector_flops / 1e9, 3),
        "detector_gflops": round(detector_gflops, 1),
        "detector_fraction": round(detector_gflops / ceiling, 3),
        "uncounted": "deformable convolutions" if "dcn" in pipeline.preset.name else None,
    }


def _relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference over the largest absolute expected value."""
    expected = expected.float().cpu()
    return float((actual.float().cpu() - expected).abs().max() / expected.abs().max())


def _variants(model: nn.Module, reference: nn.Module) -> dict[str, nn.Module]:
    """reference (as loaded), folded, folded + channels-last: each step on top of the previous one."""
    return {
        "reference": reference,
        "fold_batch_norm": model,
        "fold_batch_norm+channels_last": copy.deepcopy(model).to(memory_format=torch.channels_last),
    }


def head_inputs(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The features entering the detector's three output convolutions (those right before a YOLO layer).

    The synthetic detector's heads ignore their input (constant outputs by design), so its predictions
    cannot show a difference in the layers before them; these features can.
    """
    heads = [model.module_list[i - 1][0] for i, spec in enumerate(model.layers) if isinstance(spec, Yolo)]
    captured: list[torch.Tensor] = []
    hooks = [
        head.register_forward_pre_hook(lambda _, args: captured.append(args[0].flatten())) for head in heads
    ]
    try:
        model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(captured)


def _forward(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return model(inputs)


def _compare(
    models: dict[str, nn.Module],
    inputs: torch.Tensor,
    device: torch.device,
    plan: Plan,
    outputs: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _forward,
) -> dict[str, Any]:
    """Time the variants in turns and give each one's largest output difference from the reference."""
    with torch.inference_mode(), autocast(device):
        expected = outputs(models["reference"], inputs)
        works = {name: partial(model, inputs) for name, model in models.items()}
        timings = measure_interleaved(works, plan.repeats, plan.warmup, device)
        return {
            name: timings[name].as_dict()
            | {"max_relative_difference": _relative_difference(outputs(model, inputs), expected)}
            for name, model in models.items()
        }


def ablation(pipeline: PosePipeline, weights: Path, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Each optimisation off and on, same run, same inputs."""
    device, preset = pipeline.device, pipeline.preset
    results: dict[str, Any] = {}

    log("ablation: pose network")
    image = synthetic_photo(*LOOP_IMAGE, seed=5)
    crops, _ = crop_persons(image, person_boxes(*LOOP_IMAGE, LOOP_PERSONS, seed=5)[0], preset.input_size)
    crops = crops.to(device)
    plain = load_pose_model(preset, weights / preset.checkpoint.name, device)
    folded = load_pose_model(preset, weights / preset.checkpoint.name, device, fold_batch_norm=True)
    variants = _variants(folded, plain)
    results[f"pose_forward_batch{LOOP_PERSONS}"] = _compare(variants, crops, device, plan)
    results["pose_forward_batch1"] = _compare(variants, crops[:1], device, plan)
    del plain, folded, variants
    if device.type == "cpu":
        crowd, _ = crop_persons(image, person_boxes(*LOOP_IMAGE, 20, seed=20)[0], preset.input_size)
        chunks = f"chunks_of_{CPU_FORWARD_BATCH}"
        timings = measure_interleaved(
            {
                "one_batch_of_20": partial(pose_forward, pipeline, crowd),
                chunks: partial(pipeline.heatmaps, crowd),
            },
            plan.repeats,
            plan.warmup,
            device,
        )
        difference = _relative_difference(pipeline.heatmaps(crowd), pose_forward(pipeline, crowd))
        results["pose_forward_20_persons"] = {
            "one_batch_of_20": timings["one_batch_of_20"].as_dict(),
            chunks: timings[chunks].as_dict() | {"max_relative_difference": difference},
        }

    log("ablation: detector network")
    size = pipeline.detector.input_size
    squares = network_input(letterbox(image, size)[0][None].to(device))
    plain = load_detector(weights / DETECTORS["yolov3-spp"].weights.name, size, device)
    folded = load_detector(weights / DETECTORS["yolov3-spp"].weights.name, size, device, fold_batch_norm=True)
    results["detector_forward"] = _compare(_variants(folded, plain), squares, device, plan, head_inputs)
    del plain, folded

    log("ablation: crops")
    big = synthetic_photo(1920, 1080, seed=6)
    boxes = person_boxes(1920, 1080, 20, seed=6)[0]
    reference, _ = crop_persons(big, boxes, preset.input_size)
    pixels = torch.from_numpy(big).to(device)
    batched, _ = crop_persons_batched(pixels, boxes, preset.input_size)
    timings = measure_interleaved(
        {
            "opencv_per_box": lambda: crop_persons(big, boxes, preset.input_size)[0].to(device),
            "batched_grid_sample": lambda: crop_persons_batched(
                torch.from_numpy(big).to(device), boxes, preset.input_size
            ),
        },
        plan.repeats,
        plan.warmup,
        device,
    )
    results["crops_20_persons_1920x1080"] = {
        "opencv_per_box": timings["opencv_per_box"].as_dict(),
        "batched_grid_sample": timings["batched_grid_sample"].as_dict()
        | {"max_relative_difference": _relative_difference(batched, reference)},
        "used": "batched_grid_sample" if device.type == "cuda" else "opencv_per_box",
    }

    log("ablation: request decode")
    payload = request_image(big)
    data = decode_base64(payload)
    results["base64_1920x1080"] = _compare_functions(
        {"lenient": partial(decode_base64_lenient, payload), "strict_first": partial(decode_base64, payload)},
        lambda a, b: float(a != b),
        plan,
    )
    results["image_decode_1920x1080"] = _compare_functions(
        {
            "pillow": lambda: decode_with_pillow(Image.open(io.BytesIO(data))),
            "opencv_jpeg": partial(decode_image, data, max_pixels=big.size),
        },
        lambda a, b: float(np.abs(a.astype(np.int16) - b).max()) / 255,
        plan,
    )

    log("ablation: loading")
    results["load_pose_model"] = _loading(preset, weights / preset.checkpoint.name, device)

    if device.type == "cuda":
        log("ablation: fp16")
        model = pipeline.pose_model

        def half_precision() -> torch.Tensor:
            with autocast(device):
                return model(crops)

        with torch.inference_mode():
            timings = measure_interleaved(
                {"fp32": partial(model, crops), "fp16": half_precision}, plan.repeats, plan.warmup, device
            )
            fp32, fp16 = timings["fp32"], timings["fp16"]
            difference = _relative_difference(half_precision(), model(crops))
        results[f"pose_precision_batch{LOOP_PERSONS}"] = {
            "float32": fp32.as_dict(),
            "float16_autocast": fp16.as_dict() | {"max_relative_difference": difference},
        }
    return results


def _compare_functions(
    works: dict[str, Callable[[], Any]], difference: Callable[[Any, Any], float], plan: Plan
) -> dict[str, Any]:
    """Host-side work in turns, the first as the reference; differences as ``difference`` measures them."""
    timings = measure_interleaved(works, plan.repeats, plan.warmup, torch.device("cpu"))
    reference = next(iter(works.values()))()
    return {
        name: timings[name].as_dict() | {"max_relative_difference": difference(work(), reference)}
        for name, work in works.items()
    }


def _loading(preset: Any, checkpoint: Path, device: torch.device) -> dict[str, Any]:
    """Build-then-copy (random init that the checkpoint overwrites) against meta-device build + assign."""

    def build_then_copy() -> nn.Module:
        model = preset.build()
        model.load_state_dict(read_state_dict(checkpoint), strict=True)
        return model.to(device).eval()

    results = {}
    for name, load in (
        ("build_then_copy", build_then_copy),
        ("meta_assign", lambda: load_pose_model(preset, checkpoint, device)),
    ):
        load()  # file in the page cache for both
        times = []
        for _ in range(2):
            start = time.perf_counter()
            load()
            times.append((time.perf_counter() - start) * 1000)
        results[name] = {"ms": round(min(times), 1)}
    return results
