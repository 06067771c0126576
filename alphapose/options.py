"""Every setting of a pipeline in one frozen value, with each default written once.

The Nuclio function builds it from its ``ALPHAPOSE_*`` variables, the command-line tools from their flags,
a library user by hand; :meth:`alphapose.PosePipeline.from_weights_dir` takes it. Values are checked
here, so every way in refuses the same bad values with the same words.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alphapose.detection.detectors import DEFAULT_DETECTOR, DETECTORS, DetectorSpec, get_detector
from alphapose.engines import DEFAULT_ENGINE, PRECISIONS, parse_engines
from alphapose.errors import OptionError
from alphapose.pose.presets import DEFAULT_PRESET, PRESETS, PosePreset, get_preset

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# The largest detector_size taken: YOLO detectors are run at 1280-1536 at most in practice, and this leaves
# room above that. Without a bound any multiple of 32 passed (99999968 is one), and the letterboxed frame
# outgrew memory inside OpenCV on the first image instead of being refused here, naming the option.
MAX_DETECTOR_SIZE = 4096


@dataclass(frozen=True)
class PipelineOptions:
    """How to build and run a :class:`alphapose.PosePipeline`.

    ``detector_size`` None means the detector's official input size (608 for YOLOv3-SPP); a size given is a
    multiple of 32 up to :data:`MAX_DETECTOR_SIZE`.
    ``detector_confidence`` and ``detector_nms`` are AlphaPose's own values.
    """

    preset: str = DEFAULT_PRESET
    detector: str = DEFAULT_DETECTOR
    device: str = "auto"  # auto (CUDA when visible, else CPU), cpu, cuda or cuda:N
    detector_size: int | None = None
    flip: bool = False  # average in the mirrored crops (AlphaPose's flip test)
    max_batch: int = 64  # person crops per pose-network forward
    detector_confidence: float = 0.1
    detector_nms: float = 0.6
    # auto (fp16 autocast on CUDA, fp32 on a CPU), fp32, bf16, fp16 or int8 (precision.py)
    precision: str = "auto"
    # torch, onnxruntime or openvino for both networks, or detector=NAME,pose=NAME (alphapose/engines)
    engine: str = DEFAULT_ENGINE
    # int8 only: a directory of images like those to annotate, to calibrate on
    # (alphapose/engines/calibration.py)
    calibration: str | Path | None = None

    def __post_init__(self) -> None:
        """Refuse a bad value now, naming the option, rather than when the networks load.

        Types are checked too: a string where a bool belongs (``flip="no"``) is truthy and would silently
        turn the option on, and a bool where a number belongs is an int to Python.
        """
        problems = {
            "preset": _choice(self.preset, PRESETS, "preset"),
            "detector": _choice(self.detector, DETECTORS, "detector"),
            "device": None
            if isinstance(self.device, str) and _DEVICE.fullmatch(self.device)
            else "expected auto, cpu, cuda or cuda:N",
            "detector_size": None
            if self.detector_size is None
            or (
                _is_int(self.detector_size)
                and 32 <= self.detector_size <= MAX_DETECTOR_SIZE
                and self.detector_size % 32 == 0
            )
            else f"must be a multiple of 32 from 32 to {MAX_DETECTOR_SIZE}",
            "flip": None if isinstance(self.flip, bool) else "must be True or False",
            "max_batch": None
            if _is_int(self.max_batch) and self.max_batch >= 1
            else "must be an integer, at least 1",
            "detector_confidence": _unit_interval(self.detector_confidence),
            "detector_nms": _unit_interval(self.detector_nms),
            "precision": None
            if isinstance(self.precision, str) and self.precision in PRECISIONS
            else f"expected one of {', '.join(PRECISIONS)}",
            "engine": None
            if isinstance(self.engine, str)
            else "expected a string: torch, onnxruntime, openvino or detector=NAME,pose=NAME",
            "calibration": None
            if self.calibration is None or isinstance(self.calibration, str | Path)
            else "expected a directory of images (a path) or None",
        }
        if self.precision == "int8" and self.calibration is None:
            problems["precision"] = (
                "int8 is calibrated on images like those it will see and none ship with it: name a directory "
                "of such frames with calibration (ALPHAPOSE_CALIBRATION_DIR, --calibration)"
            )
        for name, problem in problems.items():
            if problem:
                raise OptionError(name, getattr(self, name), problem)
        parse_engines(self.engine)  # the name only: whether the runtime is installed is checked on load

    @property
    def pose_preset(self) -> PosePreset:
        return get_preset(self.preset)

    @property
    def detector_spec(self) -> DetectorSpec:
        return get_detector(self.detector)

    @property
    def detector_input_size(self) -> int:
        return self.detector_size or self.detector_spec.input_size


def _is_int(value: object) -> bool:
    """An integer, numpy's included, but not a bool (which Python counts as one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _unit_interval(value: object) -> str | None:
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return None if number and 0.0 <= value <= 1.0 else "must be a number in [0, 1]"


def _choice(value: object, table: Mapping[str, object], what: str) -> str | None:
    if isinstance(value, str) and value in table:
        return None
    return f"unknown {what}; choose one of: {', '.join(table)}"
