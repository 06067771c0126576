"""The model behind the Nuclio function: its configuration and one call from request to answer.

Configuration comes from ``ALPHAPOSE_*`` environment variables (function.yaml ``spec.env`` or
``nuctl deploy --env``), parsed and validated only in :meth:`Config.from_env`:

=============================== ======================== ==============================================
variable                        default                  meaning
=============================== ======================== ==============================================
ALPHAPOSE_WEIGHTS_DIR           ``weights/`` next to     directory holding the official files under
                                this file                their official names
ALPHAPOSE_PRESET                fastpose_res50_coco      pose model (see alphapose/presets.py)
ALPHAPOSE_DEVICE                auto                     auto (CUDA if visible), cpu, cuda or cuda:N
ALPHAPOSE_DETECTOR_SIZE         608                      YOLO input size, a multiple of 32
ALPHAPOSE_FLIP                  0                        1 averages in the mirrored crops (flip test)
ALPHAPOSE_MAX_BATCH             64                       person crops per pose-network forward
ALPHAPOSE_KEYPOINT_THRESHOLD    0.4                      keypoints below it are sent ``outside``
                                                         (AlphaPose's drawing threshold)
ALPHAPOSE_MAX_PIXELS            50000000                 larger images are refused with 413
ALPHAPOSE_DETECTOR_CONFIDENCE   0.1                      YOLO objectness threshold (AlphaPose's)
ALPHAPOSE_DETECTOR_NMS          0.6                      YOLO NMS IoU threshold (AlphaPose's)
=============================== ======================== ==============================================

An empty variable counts as unset. The default weights directory is ``./weights`` in a checkout
(where ``make weights`` puts them) and /opt/nuclio/weights in a function image, since Nuclio copies the
function directory to /opt/nuclio; the images built from this repository set the variable explicitly.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from alphapose.errors import WeightsError
from alphapose.formats import coco_results, cvat_skeletons
from alphapose.pipeline import Pose, PosePipeline
from alphapose.presets import DEFAULT_PRESET, DETECTOR_INPUT_SIZE, DETECTOR_WEIGHTS, PRESETS
from alphapose.request import PoseRequest
from alphapose.skeletons import Skeleton

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ConfigError(ValueError):
    """An ``ALPHAPOSE_*`` variable holds a value the function cannot run with; the message names it."""


def _integer(text: str) -> int:
    return int(text.strip())


def _number(text: str) -> float:
    return float(text.strip())


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 0 or 1")


def _device(text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError("expected auto, cpu, cuda or cuda:N")
    return value


def _preset(text: str) -> str:
    if text.strip() not in PRESETS:
        raise ValueError(f"unknown preset; choose one of: {', '.join(PRESETS)}")
    return text.strip()


def _between(low: float, high: float) -> Callable[[float], str | None]:
    return lambda v: None if low <= v <= high else f"must be in [{low:g}, {high:g}]"


def _at_least(low: int) -> Callable[[int], str | None]:
    return lambda v: None if v >= low else f"must be at least {low}"


def _detector_size(v: int) -> str | None:
    return None if v >= 32 and v % 32 == 0 else "must be a positive multiple of 32"


@dataclass(frozen=True)
class Config:
    """Everything the function reads from its environment (see the module docstring)."""

    weights_dir: Path = DEFAULT_WEIGHTS_DIR
    preset: str = DEFAULT_PRESET
    device: str = "auto"
    detector_size: int = DETECTOR_INPUT_SIZE
    flip: bool = False
    max_batch: int = 64
    keypoint_threshold: float = 0.4
    max_pixels: int = 50_000_000
    detector_confidence: float = 0.1
    detector_nms: float = 0.6

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Parse and validate the ``ALPHAPOSE_*`` variables of ``environ`` (default: ``os.environ``)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (variable, parse, check) in _VARIABLES.items():
            text = environ.get(variable, "")
            if not text.strip():
                continue
            try:
                value = parse(text)
            except ValueError as exc:
                raise ConfigError(f"invalid {variable}={text!r}: {exc}") from None
            problem = check(value) if check else None
            if problem:
                raise ConfigError(f"invalid {variable}={text!r}: {problem}")
            values[name] = value
        return cls(**values)


_VARIABLES: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], str | None] | None]] = {
    "weights_dir": ("ALPHAPOSE_WEIGHTS_DIR", lambda text: Path(text.strip()).expanduser(), None),
    "preset": ("ALPHAPOSE_PRESET", _preset, None),
    "device": ("ALPHAPOSE_DEVICE", _device, None),
    "detector_size": ("ALPHAPOSE_DETECTOR_SIZE", _integer, _detector_size),
    "flip": ("ALPHAPOSE_FLIP", _switch, None),
    "max_batch": ("ALPHAPOSE_MAX_BATCH", _integer, _at_least(1)),
    "keypoint_threshold": ("ALPHAPOSE_KEYPOINT_THRESHOLD", _number, _between(0.0, 1.0)),
    "max_pixels": ("ALPHAPOSE_MAX_PIXELS", _integer, _at_least(1)),
    "detector_confidence": ("ALPHAPOSE_DETECTOR_CONFIDENCE", _number, _between(0.0, 1.0)),
    "detector_nms": ("ALPHAPOSE_DETECTOR_NMS", _number, _between(0.0, 1.0)),
}


class ModelHandler:
    """One loaded pipeline plus the function's answer formats; built once per worker."""

    def __init__(self, config: Config) -> None:
        _check_device(config.device)
        self.config = config
        _let_pixel_limit_decide(config.max_pixels)
        start = time.perf_counter()
        try:
            self.pipeline = PosePipeline.from_weights_dir(
                config.weights_dir,
                preset=config.preset,
                device=config.device,
                detector_size=config.detector_size,
                flip=config.flip,
                max_batch=config.max_batch,
                detector_confidence=config.detector_confidence,
                detector_nms=config.detector_nms,
            )
        except WeightsError as exc:
            raise WeightsError(f"{exc} (ALPHAPOSE_WEIGHTS_DIR selects the directory)") from exc
        self.load_seconds = time.perf_counter() - start

    @property
    def skeleton(self) -> Skeleton:
        return self.pipeline.skeleton

    @property
    def weights_files(self) -> list[Path]:
        """The files the pipeline was loaded from."""
        directory = self.config.weights_dir
        return [directory / DETECTOR_WEIGHTS, directory / self.pipeline.preset.checkpoint]

    def predict(self, image: np.ndarray) -> list[Pose]:
        """All persons in an (H, W, 3) uint8 RGB image."""
        return self.pipeline(image)

    def infer(self, request: PoseRequest) -> list[dict[str, Any]]:
        """The answer to a validated request, in the format it asked for."""
        poses = self.predict(request.image)
        if request.output_format == "coco":
            return coco_results(poses, threshold=request.threshold, image_id=request.image_id)
        return cvat_skeletons(
            poses, self.skeleton, threshold=request.threshold, keypoint_threshold=request.keypoint_threshold
        )

    def info(self) -> dict[str, Any]:
        """What is loaded, for the start-up log and the local server's health answer."""
        return {
            "preset": self.pipeline.preset.name,
            "keypoints": list(self.skeleton.keypoints),
            "device": str(self.pipeline.device),
            "weights": [str(path) for path in self.weights_files],
            "detector_size": self.config.detector_size,
            "flip": self.config.flip,
            "keypoint_threshold": self.config.keypoint_threshold,
            "threads": torch.get_num_threads(),
            "load_seconds": round(self.load_seconds, 3),
        }


def _let_pixel_limit_decide(max_pixels: int) -> None:
    """Raise Pillow's decompression-bomb limit to ``ALPHAPOSE_MAX_PIXELS`` where it is lower.

    Pillow refuses, on opening, any image over 2 x ``MAX_IMAGE_PIXELS`` pixels (about 179 million by
    default), before the request parser compares the header with the configured limit; a larger
    configured limit would otherwise be silently capped there. Smaller images are still refused by
    that comparison, before any pixel is decoded.
    """
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _check_device(device: str) -> None:
    """Fail at start-up, naming the variable, when the requested GPU does not exist."""
    if not device.startswith("cuda"):
        return
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"invalid ALPHAPOSE_DEVICE={device!r}: {torch.cuda.device_count()} CUDA device(s) visible"
        )
