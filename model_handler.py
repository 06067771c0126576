"""The model behind the Nuclio function, as small as CVAT's own: load once, parse a request, infer.

Every step between the request and the answer is the :class:`alphapose.cvat.predictor.Predictor`'s;
requests are parsed by :mod:`alphapose.cvat.request`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alphapose.cvat.predictor import Predictor
from alphapose.cvat.request import PoseRequest, parse_request
from alphapose.cvat.settings import Config
from alphapose.pipeline import PosePipeline


class ModelHandler:
    """One loaded predictor; built once per worker."""

    def __init__(self, config: Config) -> None:
        self.predictor = Predictor.load(config, quiet=True)  # the start-up log names synthetic files

    @property
    def pipeline(self) -> PosePipeline:
        return self.predictor.pipeline

    def parse(self, body: Any, *, decoded: bool) -> PoseRequest:
        """A request body checked and its image decoded, within the function's pixel limit (4xx:
        :class:`alphapose.cvat.errors.RequestError`)."""
        return parse_request(body, max_pixels=self.predictor.settings.max_pixels, decoded=decoded)

    def infer(self, request: PoseRequest) -> list[dict[str, Any]]:
        """The answer to a validated request, in the format it asked for."""
        return self.predictor.predict(request.image, **_answer_options(request))

    def infer_batch(self, requests: Sequence[PoseRequest]) -> list[list[dict[str, Any]]]:
        """The answers to several requests (a Nuclio batch): the detector runs on all their images in
        one forward, each answer equals :meth:`infer`'s."""
        found = self.predictor.poses([request.image for request in requests], len(requests))
        return [
            self.predictor.answer(poses, **_answer_options(request))
            for request, poses in zip(requests, found, strict=True)
        ]

    def info(self) -> dict[str, Any]:
        """What is loaded, for the start-up log and the local server's health answer."""
        return self.predictor.describe()


def _answer_options(request: PoseRequest) -> dict[str, Any]:
    return {
        "output_format": request.output_format,
        "threshold": request.threshold,
        "keypoint_threshold": request.keypoint_threshold,
        "image_id": request.image_id,
    }
