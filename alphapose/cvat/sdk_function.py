"""AlphaPose as a CVAT SDK auto-annotation function, for ``cvat-cli`` without Nuclio.

``cvat-cli task auto-annotate`` runs it on a workstation against any CVAT server, and ``cvat-cli function
create-native`` + ``function run-agent`` serve it as an agent. cvat-cli loads this module
(``--function-module alphapose.cvat.sdk_function``, or ``--function-file cvat_function.py`` in a checkout)
and calls :func:`create` with its ``-p NAME=TYPE:VALUE`` parameters.

The function is the Nuclio function's twin: the same configuration (``ALPHAPOSE_*`` variables, then the
built-in defaults, with the parameters on top), the same skeleton table and sublabel ids as the label
spec in function.yaml, the same image conversion and the same persons and keypoints in the answer. Only
this module imports ``cvat_sdk``; the pose library and the Nuclio function never do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import cvat_sdk.auto_annotation as cvataa
import PIL.Image
from cvat_sdk import models

from alphapose.cvat_spec import label_spec
from alphapose.errors import WeightsError
from alphapose.formats import cvat_skeletons
from alphapose.pipeline import PosePipeline
from alphapose.request import to_rgb
from alphapose.skeletons import Skeleton
from model_handler import _VARIABLES, Config, ConfigError

PERSON_LABEL_ID = 0  # the function's own id for its one label; CVAT maps it to the task's label by name

# cvat-cli parameter -> the Python type its value must have (``-p NAME=str:...`` or ``-p NAME=float:...``).
PARAMETERS: dict[str, type] = {
    "weights_dir": str,
    "preset": str,
    "detector": str,
    "device": str,
    "precision": str,
    "keypoint_threshold": float,
}

# Parameters the configuration does not hold yet, with the one value each has today (the current
# behaviour); any other value is refused. A parameter leaves this table once Config has its field.
_FIXED_SETTINGS: dict[str, str] = {"detector": "yolov3-spp", "precision": "auto"}


def create(**parameters: Any) -> AlphaPoseFunction:
    """The function cvat-cli runs, configured by its ``-p`` parameters (see :data:`PARAMETERS`)."""
    return AlphaPoseFunction(config_from_parameters(parameters))


def config_from_parameters(parameters: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """The Nuclio function's configuration (``environ``, default ``os.environ``) with the parameters on top.

    Each value goes through the same parser and range check as its ``ALPHAPOSE_*`` variable, so a
    parameter accepts exactly what the variable accepts; errors name the parameter.
    """
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)}; this function takes: {', '.join(PARAMETERS)}"
        )
    config = Config.from_env(environ)
    values = {}
    for name, value in parameters.items():
        text = _parameter_text(name, value)
        if name in _FIXED_SETTINGS:
            if text != _FIXED_SETTINGS[name]:
                supported = _FIXED_SETTINGS[name]
                raise ConfigError(
                    f"invalid parameter {name}={value!r}: this version supports only {supported!r}"
                )
            continue
        _variable, parse, check = _VARIABLES[name]
        try:
            parsed = parse(text)
        except ValueError as exc:
            raise ConfigError(f"invalid parameter {name}={value!r}: {exc}") from None
        problem = check(parsed) if check else None
        if problem:
            raise ConfigError(f"invalid parameter {name}={value!r}: {problem}")
        values[name] = parsed
    return dataclasses.replace(config, **values)


def _parameter_text(name: str, value: Any) -> str:
    """A parameter's value as the text its variable would hold, after checking its cvat-cli type."""
    expected = PARAMETERS[name]
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"invalid parameter {name}={value!r}: expected a number, pass it as -p {name}=float:VALUE"
            )
    elif not isinstance(value, str):
        raise ConfigError(
            f"invalid parameter {name}={value!r}: expected text, pass it as -p {name}=str:VALUE"
        )
    return str(value)


def detection_spec(skeleton: Skeleton) -> cvataa.DetectionFunctionSpec:
    """One ``person`` skeleton label whose points are the skeleton's keypoints, in order.

    Names and sublabel ids come from the label spec advertised in function.yaml, so a task whose labels
    were made from the Nuclio function ("From model") matches this function too.
    """
    (person,) = label_spec(skeleton)
    return cvataa.DetectionFunctionSpec(
        labels=[
            cvataa.skeleton_label_spec(
                person["name"],
                PERSON_LABEL_ID,
                [cvataa.keypoint_spec(sublabel["name"], sublabel["id"]) for sublabel in person["sublabels"]],
            )
        ]
    )


class AlphaPoseFunction:
    """A loaded pipeline behind the SDK's detection-function interface (``spec`` and ``detect``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
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
            raise WeightsError(f"{exc} (the weights_dir parameter selects the directory)") from exc
        self.spec = detection_spec(self.pipeline.skeleton)
        self._sublabel_ids = {
            sublabel.name: sublabel.id for label in self.spec.labels for sublabel in label.sublabels
        }

    def detect(
        self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image
    ) -> list[models.LabeledShapeRequest]:
        """One skeleton per person scoring at least ``context.conf_threshold`` (every person when unset).

        CVAT's frames arrive decoded, EXIF orientation applied; they get the Nuclio path's conversion
        to RGB. Keypoints below the keypoint threshold are ``outside``; persons with every keypoint
        outside are left out, as in the Nuclio answer.
        """
        poses = self.pipeline(to_rgb(image))
        threshold = 0.0 if context.conf_threshold is None else context.conf_threshold
        answer = cvat_skeletons(
            poses,
            self.pipeline.skeleton,
            threshold=threshold,
            keypoint_threshold=self.config.keypoint_threshold,
        )
        return [self._skeleton(person) for person in answer]

    def _skeleton(self, person: Mapping[str, Any]) -> models.LabeledShapeRequest:
        return cvataa.skeleton(
            PERSON_LABEL_ID,
            [
                cvataa.keypoint(
                    self._sublabel_ids[element["label"]],
                    element["points"],
                    outside=element["outside"],
                    score=_unit(element["confidence"]),
                )
                for element in person["elements"]
            ],
            score=_unit(person["confidence"]),
        )


def _unit(score: float) -> float:
    """A score clipped to [0, 1], the range of the SDK's ``score`` field (heatmap maxima can leave it)."""
    return min(max(float(score), 0.0), 1.0)
