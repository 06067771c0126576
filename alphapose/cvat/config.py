"""The function's configuration: ``ALPHAPOSE_*`` variables (or command-line flags) to checked values.

=============================== ======================== ==============================================
variable                        default                  meaning
=============================== ======================== ==============================================
ALPHAPOSE_WEIGHTS_DIR           ``weights`` (relative)   directory holding the official files under
                                                         their official names
ALPHAPOSE_PRESET                fastpose_res50_coco      pose model (alphapose/pose/presets.py)
ALPHAPOSE_DETECTOR              yolov3-spp               person detector (alphapose/detection/detectors.py)
ALPHAPOSE_DEVICE                auto                     auto (CUDA if visible), cpu, cuda or cuda:N
ALPHAPOSE_DETECTOR_SIZE         the detector's own       detector input size, a multiple of 32
ALPHAPOSE_FLIP                  0                        1 averages in the mirrored crops (flip test)
ALPHAPOSE_MAX_BATCH             64                       person crops per pose-network forward
ALPHAPOSE_KEYPOINT_THRESHOLD    the preset's             keypoints below it are sent ``outside``;
                                                         unset: AlphaPose's drawing thresholds, 0.4
                                                         for heatmap keypoints and 0.05 for
                                                         regression ones (whole-body presets)
ALPHAPOSE_MAX_PIXELS            50000000                 larger images are refused with 413
ALPHAPOSE_DETECTOR_CONFIDENCE   0.1                      detector score threshold (AlphaPose's)
ALPHAPOSE_DETECTOR_NMS          0.6                      detector NMS IoU threshold (AlphaPose's)
ALPHAPOSE_PRECISION             auto                     auto (fp16 autocast on CUDA, fp32 on a CPU),
                                                         fp32, bf16, fp16 or int8; a CPU without units
                                                         for bf16/fp16 is refused at start-up; int8
                                                         needs engine openvino and a calibration set
ALPHAPOSE_ENGINE                torch                    what runs the networks: torch, onnxruntime or
                                                         openvino (their ONNX exports, CPU only), or
                                                         detector=NAME,pose=NAME; a runtime that is
                                                         not installed is refused at start-up
ALPHAPOSE_CALIBRATION_DIR       unset                    int8 only: a directory of images like those
                                                         to annotate, to quantize on (--calibration)
=============================== ======================== ==============================================

An empty variable counts as unset. The pipeline's defaults and checks are those of
:class:`alphapose.PipelineOptions`; this module only adds the function's own settings and says, in every
error, which variable or flag held the bad value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from alphapose.cvat.errors import ConfigError
from alphapose.engines.precision import require_cpu_units, resolve_precision
from alphapose.errors import OptionError, WeightsError
from alphapose.options import PipelineOptions
from alphapose.pipeline import PosePipeline, resolve_device
from alphapose.pose.presets import PosePreset

DEFAULT_KEYPOINT_THRESHOLD: float | None = None  # None: each preset's per-keypoint thresholds
DEFAULT_MAX_PIXELS = 50_000_000
ENV_PREFIX = "ALPHAPOSE_"


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


def _word(text: str) -> str:
    return text.strip().lower()


def _name(text: str) -> str:
    return text.strip()


# Setting name -> how its text becomes a value. Pipeline settings are the fields of PipelineOptions.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "weights_dir": lambda text: Path(text.strip()).expanduser(),
    "preset": _name,
    "detector": _name,
    "device": _word,
    "detector_size": _integer,
    "flip": _switch,
    "max_batch": _integer,
    "keypoint_threshold": _number,
    "max_pixels": _integer,
    "detector_confidence": _number,
    "detector_nms": _number,
    "precision": _word,
    "engine": _word,
    "calibration": lambda text: Path(text.strip()).expanduser(),
}
# Settings whose variable is not ALPHAPOSE_ and the name in capitals (their flag is still --name).
_VARIABLES = {"calibration": "ALPHAPOSE_CALIBRATION_DIR"}
_OPTION_FIELDS = frozenset(f.name for f in fields(PipelineOptions))


def variable(setting: str) -> str:
    """The environment variable of a setting: ``ALPHAPOSE_`` and its name in capitals (but see
    :data:`_VARIABLES`)."""
    return _VARIABLES.get(setting, ENV_PREFIX + setting.upper())


@dataclass(frozen=True)
class Config:
    """Everything the function reads from its environment (see the module docstring).

    ``spelled`` remembers how the user named each setting that was given (``ALPHAPOSE_DEVICE``,
    ``--device``), so that a problem found later, when the networks load, names it the same way.
    """

    weights_dir: Path = Path("weights")
    options: PipelineOptions = field(default_factory=PipelineOptions)
    keypoint_threshold: float | None = DEFAULT_KEYPOINT_THRESHOLD
    max_pixels: int = DEFAULT_MAX_PIXELS
    spelled: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        flags: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> Config:
        """Parse and check the ``ALPHAPOSE_*`` variables of ``environ`` (default: ``os.environ``).

        ``flags`` maps ``"--flag-name"`` to text for settings given on a command line, ``parameters``
        setting names to text for settings given as CVAT SDK function parameters (``cvat-cli -p``); both
        win over the variables, and errors name the flag or the parameter.
        """
        environ = os.environ if environ is None else environ
        given = {name: (environ.get(variable(name), ""), variable(name)) for name in _PARSERS}
        for flag, text in (flags or {}).items():
            name = flag.removeprefix("--").replace("-", "_")
            if name not in _PARSERS:
                raise ValueError(f"no setting is named by {flag}")
            given[name] = (text, flag)
        for name, text in (parameters or {}).items():
            if name not in _PARSERS:
                raise ValueError(f"no setting is named {name}")
            given[name] = (text, f"parameter {name}")
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for name, (text, source) in given.items():
            if not text.strip():
                continue
            spelled[name] = source
            try:
                values[name] = _PARSERS[name](text)
            except ValueError as exc:
                raise ConfigError(f"invalid {_shown(source, text)}: {exc}") from None
        options = {k: v for k, v in values.items() if k in _OPTION_FIELDS}
        try:
            config = cls(
                options=PipelineOptions(**options),
                spelled=spelled,
                **{k: v for k, v in values.items() if k not in _OPTION_FIELDS},
            )
        except OptionError as exc:
            source = spelled[exc.option]
            raise ConfigError(f"invalid {_shown(source, given[exc.option][0])}: {exc.problem}") from None
        config.check()
        return config

    def check(self) -> None:
        """The function's own ranges (the pipeline's are checked by PipelineOptions)."""
        if self.keypoint_threshold is not None and not 0.0 <= self.keypoint_threshold <= 1.0:
            raise self.error("keypoint_threshold", self.keypoint_threshold, "must be in [0, 1]")
        if self.max_pixels < 1:
            raise self.error("max_pixels", self.max_pixels, "must be at least 1")

    def keypoint_thresholds(
        self, preset: PosePreset, requested: float | None = None
    ) -> float | tuple[float, ...]:
        """What an answer's keypoints are held to: the request's value, else the function's
        (``ALPHAPOSE_KEYPOINT_THRESHOLD``), either for every keypoint; else the preset's per-keypoint
        display thresholds (0.4 for heatmap keypoints, 0.05 for regression ones)."""
        value = self.keypoint_threshold if requested is None else requested
        return preset.keypoint_thresholds if value is None else value

    def error(self, setting: str, value: object, problem: str) -> ConfigError:
        """A :class:`ConfigError` naming the setting as the user spelled it."""
        source = self.spelled.get(setting, variable(setting))
        return ConfigError(f"invalid {_shown(source, str(value))}: {problem}")

    def check_precision(self, device: torch.device) -> None:
        """Refuse a bf16 or fp16 precision on a CPU without the units for it (see
        :func:`alphapose.engines.precision.require_cpu_units`): the library would run it, emulated and slower
        than fp32, which a deployed function should not do silently."""
        try:
            require_cpu_units(resolve_precision(self.options.precision, device))
        except OptionError as exc:
            raise self.explain(exc) from None

    def explain(self, exc: OptionError) -> ConfigError:
        """An option problem found when the pipeline was built (a missing GPU), named as spelled."""
        return self.error(exc.option, exc.value, exc.problem)

    def load_pipeline(self) -> PosePipeline:
        """The pipeline these settings describe; a problem found while loading names its setting, and a
        precision the CPU has no units for is refused before anything loads."""
        try:
            self.check_precision(resolve_device(self.options.device))
            return PosePipeline.from_weights_dir(self.weights_dir, self.options)
        except OptionError as exc:
            raise self.explain(exc) from None
        except WeightsError as exc:
            setting = self.spelled.get("weights_dir", variable("weights_dir"))
            raise WeightsError(f"{exc} ({setting} selects the directory)") from exc


def _shown(source: str, text: str) -> str:
    return f"{source} {text!r}" if source.startswith("-") else f"{source}={text!r}"
