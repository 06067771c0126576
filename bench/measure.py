"""What the benchmarks share: medians after warm-up, FLOP counts, machine facts, and the requests.

The weights are random, so the detector's boxes say nothing about how many persons an image holds; the
pose stage therefore runs on fixed person boxes (tools/synthetic_images.py), which fixes the person
count for every figure.
"""

from __future__ import annotations

import base64
import io
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from alphapose.detection.detectors import DETECTORS
from bench.cpu import cpu_model, load_average

IMAGE_SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))  # (width, height)
PERSON_COUNTS: tuple[int, ...] = (1, 5, 20)  # fixed boxes (random weights find nobody in particular)
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of repeated runs of one piece of work, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    runs: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median_ms": round(self.median_ms, 3),
            "min_ms": round(self.min_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "runs": self.runs,
        }


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What makes a GPU's queued work finish before the clock is read (nothing on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def measure(work: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> Timing:
    """Run ``work`` ``warmup`` times untimed (first-call costs: allocator, kernel selection), then time
    ``repeats`` runs; the median is the figure reported, min and max show the spread."""
    sync = synchronizer(device)
    for _ in range(warmup):
        work()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return Timing(statistics.median(times), min(times), max(times), len(times))


def measure_interleaved(
    works: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, Timing]:
    """:func:`measure` for alternatives, run in turns (a, b, a, b, ...) so that a slow spell of the
    machine hits every alternative alike: the fair way to compare a before with an after."""
    sync = synchronizer(device)
    for work in works.values():
        for _ in range(warmup):
            work()
    sync()
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: Timing(statistics.median(t), min(t), max(t), len(t)) for name, t in times.items()}


def count_flops(model: nn.Module, inputs: torch.Tensor) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), as PyTorch's counter
    sees them: convolutions and matrix products, which is where the time goes."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return int(counter.get_total_flops())


def detector_flops(model: nn.Module, name: str, inputs: torch.Tensor) -> int:
    """The FLOPs of detector ``name`` on ``inputs``. At the table's input size they must be the published
    figure (Darknet and YOLOX count a multiply-add as two), else the GFLOP/s compare with nothing: the
    benchmark stops instead of printing them."""
    flops = count_flops(model, inputs)
    spec = DETECTORS[name]
    if inputs.shape[-1] == spec.input_size and abs(flops / 1e9 - spec.gflops) > 0.005 * spec.gflops:
        raise RuntimeError(f"{name}: counted {flops / 1e9:.2f} GFLOP, published {spec.gflops}")
    return flops


def slug(text: str) -> str:
    """Lower case, runs of other characters as one dash: a file-name-safe form of a device name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_label(device: torch.device) -> str:
    """``cpu-<cpu model>-<n>threads`` or ``cuda-<gpu name>``: the results file's name."""
    if device.type == "cuda":
        return f"cuda-{slug(torch.cuda.get_device_name(device))}"
    return f"cpu-{slug(cpu_model())}-{torch.get_num_threads()}threads"


def environment(device: torch.device) -> dict[str, Any]:
    """What every figure depends on besides the code: recorded next to the figures."""
    facts: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu": cpu_model(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": load_average(),
    }
    if device.type == "cuda":
        facts["cuda"] = torch.version.cuda
        facts["cudnn"] = torch.backends.cudnn.version()
    return facts


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def request_image(image: np.ndarray) -> str:
    """The ``image`` field CVAT posts: the frame as a base64-encoded JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
