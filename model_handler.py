"""The model behind the Nuclio function: one loaded pipeline and one call from request to answer.

Configuration (``ALPHAPOSE_*``) is parsed in :mod:`alphapose.cvat.settings`, requests in
:mod:`alphapose.cvat.request`, answers written by :mod:`alphapose.cvat.formats`; this class joins them to
the pose library.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from alphapose.cvat.formats import coco_results, cvat_skeletons
from alphapose.cvat.request import PoseRequest
from alphapose.cvat.settings import Config
from alphapose.engines import describe as describe_engines
from alphapose.errors import SyntheticWeightsWarning
from alphapose.images.video import frame_poses
from alphapose.pipeline import Pose
from alphapose.weights.download import VerifiedFile, identify_file
from alphapose.weights.files import read_checksums


class ModelHandler:
    """One loaded pipeline plus the function's answer formats; built once per worker."""

    def __init__(self, config: Config) -> None:
        self.config = config
        start = time.perf_counter()
        with warnings.catch_warnings():  # the start-up log says it, per file (main.init_context)
            warnings.simplefilter("ignore", SyntheticWeightsWarning)
            self.pipeline = config.load_pipeline()
        self.load_seconds = time.perf_counter() - start
        self.weights = self._check_weights()

    def infer(self, request: PoseRequest) -> list[dict[str, Any]]:
        """The answer to a validated request, in the format it asked for."""
        return self.answer(request, self.pipeline(request.image))

    def infer_batch(self, requests: Sequence[PoseRequest]) -> list[list[dict[str, Any]]]:
        """The answers to several requests (a Nuclio batch): the detector runs on all their images in
        one forward, each answer equals :meth:`infer`'s."""
        poses = frame_poses(self.pipeline, [request.image for request in requests], len(requests))
        return [self.answer(request, found) for request, found in zip(requests, poses, strict=True)]

    def answer(self, request: PoseRequest, poses: Sequence[Pose]) -> list[dict[str, Any]]:
        """The poses found on a request's image, in the format it asked for."""
        if request.output_format == "coco":
            return coco_results(poses, threshold=request.threshold, image_id=request.image_id)
        return cvat_skeletons(
            poses,
            self.pipeline.skeleton,
            threshold=request.threshold,
            keypoint_threshold=self.config.keypoint_thresholds(
                self.pipeline.preset, request.keypoint_threshold
            ),
        )

    def info(self) -> dict[str, Any]:
        """What is loaded, for the start-up log and the local server's health answer."""
        options = self.config.options
        return {
            "preset": self.pipeline.preset.name,
            "detector": options.detector,
            "keypoints": list(self.pipeline.skeleton.keypoints),
            "device": str(self.pipeline.device),
            "precision": self.pipeline.precision.describe(),
            "engine": describe_engines(self.pipeline.engines),
            "weights": {str(f.path): f.state for f in self.weights},
            "detector_size": options.detector_input_size,
            "flip": options.flip,
            "keypoint_threshold": self.config.keypoint_threshold
            if self.config.keypoint_threshold is not None
            else f"per keypoint: {_describe_thresholds(self.pipeline.preset.keypoint_thresholds)}",
            "threads": torch.get_num_threads(),
            "load_seconds": round(self.load_seconds, 3),
        }

    def _check_weights(self) -> list[VerifiedFile]:
        """Each loaded file's sha256 against the recorded ones: recorded, unrecorded or synthetic."""
        directory, options = self.config.weights_dir, self.config.options
        names = (options.detector_spec.weights.name, options.pose_preset.checkpoint.name)
        checksums = read_checksums()
        return [identify_file(directory / name, checksums) for name in names]


def _describe_thresholds(thresholds: tuple[float, ...]) -> str:
    """``0.4 for 26, 0.05 for 110`` (runs of equal values, in keypoint order)."""
    runs: list[list[float]] = []
    for value in thresholds:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return ", ".join(f"{value:g} for {int(count)}" for value, count in runs)
