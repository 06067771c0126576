"""The function's settings, in one table: each row names a setting once, with its parser, default,
environment variable, command-line flag, SDK parameter and help.

From :data:`SETTINGS` are made the ``ALPHAPOSE_*`` parsing (:meth:`Config.from_env`), the setting flags
of ``python -m tools predict``, ``annotate-task`` and ``evaluate`` (:func:`add_setting_flags`), the SDK
function's parameters (:data:`SDK_PARAMETERS`) and the README's settings table (:func:`readme_table`,
checked by a test). The pipeline's defaults are :class:`alphapose.PipelineOptions`' fields, read from
there. An empty variable counts as unset.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alphapose.cvat.errors import ConfigError
from alphapose.errors import OptionError, WeightsError
from alphapose.images import DEFAULT_MAX_PIXELS
from alphapose.options import MAX_DETECTOR_SIZE, PipelineOptions
from alphapose.pose.presets import PosePreset

if TYPE_CHECKING:
    from alphapose.pipeline import PosePipeline

ENV_PREFIX = "ALPHAPOSE_"
_OPTION_DEFAULTS = {f.name: f.default for f in fields(PipelineOptions) if f.default is not MISSING}


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


def _path(text: str) -> Path:
    return Path(text.strip()).expanduser()


@dataclass(frozen=True)
class Setting:
    """One setting. ``default`` is the function's own (a pipeline setting's comes from PipelineOptions);
    ``shown_default`` is how the README tells it (None: the value in backquotes); ``help`` is the flag's
    help and the README's meaning, ``more`` what only the README adds."""

    name: str
    parse: Callable[[str], Any]
    help: str
    default: Any = None
    shown_default: str | None = None
    more: str = ""
    variable: str = ""  # "": ALPHAPOSE_ and the name in capitals
    flag: bool = True  # --name-with-dashes on predict, annotate-task and evaluate
    switch: bool = False  # a flag without a value that sets 1
    metavar: str | None = None
    sdk: type | None = None  # the cvat-cli parameter's type (-p NAME=TYPE:VALUE), None: not a parameter

    @property
    def env(self) -> str:
        return self.variable or ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def _pipeline(name: str, parse: Callable[[str], Any], help: str, **row: Any) -> Setting:
    """A setting of :class:`PipelineOptions`: its default is the field's."""
    return Setting(name, parse, help, default=_OPTION_DEFAULTS[name], **row)


# Settings that are SDK parameters come first, in the order of the README's parameter table.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "weights_dir",
        _path,
        "directory of the weights files under their official names",
        default=Path("weights"),
        shown_default="`weights` (relative to the working directory); the images set "
        "`/opt/alphapose/weights`",
        sdk=str,
    ),
    _pipeline(
        "preset",
        _name,
        "pose model, e.g. fastpose_res50_halpe26",
        more="; see [Presets](#presets)",
        sdk=str,
    ),
    _pipeline(
        "detector",
        _name,
        "person detector, e.g. yolov3-spp",
        shown_default="`yolov3-spp` (the function files: `yolox-s` on CPU, `yolox-x` on GPU)",
        more="; see [Detectors](#detectors)",
        sdk=str,
    ),
    _pipeline(
        "device",
        _word,
        "auto (CUDA when visible, else CPU), cpu, cuda or cuda:N",
        more="; the yaml files set `cpu` or `cuda`",
        sdk=str,
    ),
    _pipeline(
        "precision",
        _word,
        "auto (fp16 autocast on CUDA, fp32 on a CPU), fp32, bf16, fp16 or int8; bf16 is refused on a CPU "
        "without AMX or AVX512-BF16 (fp16 without AMX-FP16 or AVX512-FP16); int8 needs engine openvino "
        "and a calibration directory",
        more="; see [Precision](#precision) and [int8](#int8). fp32 gives the reference results on any "
        "device",
        sdk=str,
    ),
    _pipeline(
        "engine",
        _word,
        "what runs the two networks: torch, onnxruntime or openvino (their ONNX exports, CPU only), or "
        "detector=NAME,pose=NAME",
        shown_default="`torch` (the CPU function files: `detector=onnxruntime,pose=openvino`)",
        more="; see [Engines](#engines). A runtime that is not installed is refused at start-up with the "
        "extra to install",
        sdk=str,
    ),
    _pipeline(
        "calibration",
        _path,
        "int8 only: a directory of frames like those to annotate, which each network is quantized on",
        shown_default="unset",
        more="; see [int8](#int8). Read only with `int8`",
        variable="ALPHAPOSE_CALIBRATION_DIR",
        metavar="DIR",
        sdk=str,
    ),
    Setting(
        "keypoint_threshold",
        _number,
        "keypoints below it are outside; the default for the request's keypoint_threshold",
        shown_default="unset: the preset's per keypoint (0.4 heatmap, 0.05 regression)",
        sdk=float,
    ),
    _pipeline(
        "detector_size",
        _integer,
        f"detector input size, a multiple of 32 from 32 to {MAX_DETECTOR_SIZE}; smaller is faster and misses "
        "small persons",
        shown_default="the detector's own (608 for YOLOv3-SPP, 640 for YOLOX)",
    ),
    _pipeline(
        "flip",
        _switch,
        "average in the mirrored crops (AlphaPose's flip test)",
        shown_default="`0`",
        more=": `1` gives slightly better keypoints for twice the pose work",
        switch=True,
    ),
    _pipeline(
        "max_batch",
        _integer,
        "person crops per pose network forward; lower it to save GPU memory",
        more=" (on a CPU at most 8 are used: larger batches are slower per crop there)",
        flag=False,
    ),
    Setting(
        "max_pixels",
        _integer,
        "larger images are refused (with 413 by the function)",
        default=DEFAULT_MAX_PIXELS,
        flag=False,
    ),
    _pipeline("detector_confidence", _number, "detector score threshold (AlphaPose's value)", flag=False),
    _pipeline(
        "detector_nms",
        _number,
        "detector non-maximum suppression IoU threshold (AlphaPose's value)",
        flag=False,
    ),
)
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
SDK_PARAMETERS: dict[str, type] = {s.name: s.sdk for s in SETTINGS if s.sdk is not None}
FLAGS: dict[str, Setting] = {s.option: s for s in SETTINGS if s.flag}


def variable(setting: str) -> str:
    """The environment variable of a setting."""
    return BY_NAME[setting].env


@dataclass(frozen=True)
class Config:
    """Every setting's checked value (see :data:`SETTINGS`).

    ``spelled`` remembers how the user named each setting that was given (``ALPHAPOSE_DEVICE``,
    ``--device``), so that a problem found later, when the networks load, names it the same way.
    """

    weights_dir: Path = BY_NAME["weights_dir"].default
    options: PipelineOptions = field(default_factory=PipelineOptions)
    keypoint_threshold: float | None = BY_NAME["keypoint_threshold"].default
    max_pixels: int = BY_NAME["max_pixels"].default
    spelled: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        flags: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
        spelled: Mapping[str, str] | None = None,
    ) -> Config:
        """Parse and check the ``ALPHAPOSE_*`` variables of ``environ`` (default: ``os.environ``).

        ``flags`` maps ``"--flag-name"`` to text for settings given on a command line, ``parameters``
        setting names to text for settings given as CVAT SDK function parameters (``cvat-cli -p``); both
        win over the variables, and errors name the flag or the parameter. ``spelled`` maps a flag of
        ``flags`` that the user typed in another form to that form (evaluate's ``--compare detector`` for
        ``--detector``): errors name what was typed, not a flag the user never gave.
        """
        environ = os.environ if environ is None else environ
        given = {s.name: (environ.get(s.env, ""), s.env) for s in SETTINGS}
        for flag, text in (flags or {}).items():
            name = flag.removeprefix("--").replace("-", "_")
            if name not in BY_NAME:
                raise ValueError(f"no setting is named by {flag}")
            given[name] = (text, (spelled or {}).get(flag, flag))
        for name, text in (parameters or {}).items():
            if name not in BY_NAME:
                raise ValueError(f"no setting is named {name}")
            given[name] = (text, f"parameter {name}")
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for name, (text, source) in given.items():
            if not text.strip():
                continue
            spelled[name] = source
            try:
                values[name] = BY_NAME[name].parse(text)
            except ValueError as exc:
                raise ConfigError(f"invalid {_shown(source, text)}: {exc}") from None
        options = {k: v for k, v in values.items() if k in _OPTION_DEFAULTS}
        try:
            config = cls(
                options=PipelineOptions(**options),
                spelled=spelled,
                **{k: v for k, v in values.items() if k not in _OPTION_DEFAULTS},
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

    def keypoint_thresholds(self, preset: PosePreset) -> float | tuple[float, ...]:
        """What an answer's keypoints are held to when its request sets no keypoint threshold: this
        setting (``ALPHAPOSE_KEYPOINT_THRESHOLD``) for every keypoint, else the preset's per-keypoint
        display thresholds (0.4 for heatmap keypoints, 0.05 for regression ones)."""
        return preset.keypoint_thresholds if self.keypoint_threshold is None else self.keypoint_threshold

    def model_record(self) -> dict[str, str]:
        """What decides the poses a model loaded from these settings finds, as text for the record a
        results file keeps to be continued (evaluate's partial results, annotate-task's checkpoint): the
        weights directory, every pipeline option, and the calibration set by its contents (its digest;
        changed frames in the same directory quantize the networks differently)."""
        record = {
            "weights_dir": str(self.weights_dir.resolve()),
            **{key: str(value) for key, value in asdict(self.options).items()},
        }
        if self.options.calibration is not None:
            from alphapose.engines.calibration import CalibrationSet

            record["calibration"] = CalibrationSet.from_directory(self.options.calibration).cache_key
        return record

    def error(self, setting: str, value: object, problem: str) -> ConfigError:
        """A :class:`ConfigError` naming the setting as the user spelled it."""
        source = self.spelled.get(setting, variable(setting))
        return ConfigError(f"invalid {_shown(source, str(value))}: {problem}")

    def explain(self, exc: OptionError) -> ConfigError:
        """An option problem found when the pipeline was built (a missing GPU), named as spelled."""
        return self.error(exc.option, exc.value, exc.problem)

    def load_pipeline(self) -> PosePipeline:
        """The pipeline these settings describe; a problem found while loading (a missing GPU, a precision
        the CPU has no units for, both refused before anything loads) names its setting as spelled. The
        networks are imported here: the table, the checks and the flags made from them need none."""
        from alphapose.pipeline import PosePipeline

        try:
            return PosePipeline.from_weights_dir(self.weights_dir, self.options)
        except OptionError as exc:
            raise self.explain(exc) from None
        except WeightsError as exc:
            setting = self.spelled.get("weights_dir", variable("weights_dir"))
            raise WeightsError(f"{exc} ({setting} selects the directory)") from exc


def _shown(source: str, text: str) -> str:
    """A flag and its value as typed (``--device 'cuda'``); anything else, a variable, a parameter or a
    setting named after another flag (``--compare device``), joined to the value by ``=``."""
    return f"{source} {text!r}" if source in FLAGS else f"{source}={text!r}"


def add_setting_flags(parser: argparse.ArgumentParser | Any) -> None:
    """The flags of :data:`FLAGS` on a command's parser; each overrides its variable."""
    for flag, setting in FLAGS.items():
        text = f"{setting.help} ({setting.env}{'=1' if setting.switch else ''})"
        if setting.switch:
            parser.add_argument(flag, action="store_const", const="1", help=text)
        else:
            parser.add_argument(flag, metavar=setting.metavar, help=text)


def setting_flags(args: argparse.Namespace) -> dict[str, str]:
    """The setting flags given on the command line, as :meth:`Config.from_env` takes them."""
    given = {flag: getattr(args, setting.name) for flag, setting in FLAGS.items()}
    return {flag: value for flag, value in given.items() if value}


def readme_table() -> str:
    """The README's settings table (``python -m tools.readme`` writes it there)."""
    lines = [
        "| variable | flag | SDK parameter | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flag = f"`{s.option}`" if s.flag else ""
        parameter = f"`{s.name}={s.sdk.__name__}:`" if s.sdk else ""
        default = s.shown_default if s.shown_default is not None else f"`{s.default}`"
        lines.append(f"| `{s.env}` | {flag} | {parameter} | {default} | {s.help}{s.more} |")
    return "\n".join(lines) + "\n"
