"""AlphaPose as a CVAT SDK auto-annotation function, for ``cvat-cli`` without Nuclio.

``cvat-cli task auto-annotate`` runs it on a workstation against a CVAT server, and ``cvat-cli function
create-native`` + ``function run-agent`` serve it as an agent. cvat-cli loads this module
(``--function-module alphapose.cvat.sdk_function`` with the package installed, or ``--function-file
cvat_function.py`` in a checkout) and calls :func:`create` with its ``-p NAME=TYPE:VALUE`` parameters.

It is the Nuclio function's twin: the same configuration (the ``ALPHAPOSE_*`` variables and their
defaults, with the parameters on top), the same sublabel names and ids as the label spec in
function.yaml, the same conversion of the frame to RGB, and the same persons and keypoints in the
answer. Its defaults are those of the configuration, not the ones the function files set (their
detector and engine): the README gives the parameters that run what a function file runs. This is
the only module that imports ``cvat_sdk`` (the ``cvat`` extra); nothing else in the package imports
it, so the Nuclio function and the library run without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cvat_sdk.auto_annotation as cvataa
import PIL.Image
from cvat_sdk import models

from alphapose.cvat.errors import ConfigError
from alphapose.cvat.predictor import Predictor, start_process
from alphapose.cvat.settings import SDK_PARAMETERS, Config
from alphapose.cvat.spec import label_spec
from alphapose.images.decode import to_rgb
from alphapose.pose.skeletons import Skeleton

PERSON_LABEL_ID = 0  # the function's own id for its one label; CVAT maps it to the task's label by name

# cvat-cli parameter -> the Python type of its value (``-p NAME=str:VALUE``, ``-p NAME=float:VALUE``).
PARAMETERS = SDK_PARAMETERS


def create(**parameters: Any) -> AlphaPoseFunction:
    """The function cvat-cli runs, configured by its ``-p`` parameters (see :data:`PARAMETERS`).

    It makes the Nuclio function's process-wide start-up steps (:func:`start_process`).
    """
    config = config_from_parameters(parameters)
    start_process(config)
    return AlphaPoseFunction(config)


def config_from_parameters(parameters: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """The Nuclio function's configuration (``environ``, default ``os.environ``) with the parameters on top.

    A parameter accepts what its ``ALPHAPOSE_*`` variable accepts, checked by the same code; errors name
    the parameter.
    """
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)}; this function takes: {', '.join(PARAMETERS)}"
        )
    texts = {name: _parameter_text(name, value) for name, value in parameters.items()}
    return Config.from_env(environ, parameters=texts)


def _parameter_text(name: str, value: Any) -> str:
    """A parameter's value as the text its variable would hold, once its cvat-cli type is checked."""
    if PARAMETERS[name] is float:
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

    Names and sublabel ids are those of the label spec in function.yaml, so a task whose labels were
    made from the Nuclio function ("From model") matches this function as well.
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
    """A loaded predictor behind the SDK's detection-function interface (``spec`` and ``detect``)."""

    def __init__(self, config: Config) -> None:
        self.predictor = Predictor.load(config)
        self.spec = detection_spec(self.predictor.skeleton)
        self._sublabel_ids = {
            sublabel.name: sublabel.id for label in self.spec.labels for sublabel in label.sublabels
        }

    def detect(
        self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image
    ) -> list[models.LabeledShapeRequest]:
        """One skeleton per person scoring at least ``context.conf_threshold`` (every person when unset).

        The frame arrives decoded with EXIF orientation applied (CVAT's frames carry none) and gets the
        Nuclio path's conversion to RGB. Keypoints below the keypoint threshold are ``outside``; a person
        with every keypoint outside is left out, as in the Nuclio answer.
        """
        answer = self.predictor.predict(to_rgb(image), threshold=context.conf_threshold or 0.0)
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
