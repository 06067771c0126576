"""One loaded model and every step between images and an answer, for every entry point.

The Nuclio handler, the SDK function and the tools (``predict``, ``annotate-task``, ``evaluate``) hold a
:class:`Predictor` and ask it for answers: CVAT skeletons or AlphaPose's results for images, tracked
frames for a video. The thresholds of an image's answer are applied here and only here: the box-score
threshold drops persons, the keypoint threshold (the request's, else the setting's, else the preset's
per keypoint) marks keypoints ``outside``; on a video the tracker sees every pose and applies the
box-score threshold after tracking (:meth:`alphapose.tracking.PoseTracker.track`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alphapose.cvat.formats import coco_results, cvat_skeletons
from alphapose.cvat.settings import Config
from alphapose.engines.prepare import describe as describe_engines
from alphapose.errors import SyntheticWeightsWarning
from alphapose.images.decode import allow_large_images
from alphapose.pipeline import PosePipeline
from alphapose.pose.presets import PosePreset
from alphapose.pose.skeletons import Skeleton, oks_sigmas
from alphapose.structures import Pose
from alphapose.weights.download import identify_file
from alphapose.weights.files import read_checksums

if TYPE_CHECKING:  # the tracker needs scipy (the video extra), which the Nuclio function does without
    from alphapose.tracking import TrackedFrame, TrackerOptions


def start_process(settings: Config) -> None:
    """The process-wide start-up steps of every entry point, once per process: CPU threads capped at
    the CPUs this process may use, and Pillow's pixel cap raised to the ``max_pixels`` setting."""
    from alphapose.engines.threads import configure_cpu_threads

    configure_cpu_threads()
    allow_large_images(settings.max_pixels)


class Predictor:
    """A loaded :class:`PosePipeline` with the settings' answer rules, as SamPredictor holds SAM:
    images in, answers out."""

    def __init__(
        self, pipeline: PosePipeline, settings: Config | None = None, load_seconds: float = 0.0
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings or Config()
        self.load_seconds = load_seconds

    @classmethod
    def load(cls, settings: Config, *, quiet: bool = False) -> Predictor:
        """The pipeline the settings describe (:meth:`Config.load_pipeline`); ``quiet`` keeps the
        synthetic-weights warning for a caller that reports it itself (the function's start-up log)."""
        start = time.perf_counter()
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore", SyntheticWeightsWarning)
            pipeline = settings.load_pipeline()
        return cls(pipeline, settings, time.perf_counter() - start)

    @property
    def skeleton(self) -> Skeleton:
        return self.pipeline.skeleton

    @property
    def preset(self) -> PosePreset:
        return self.pipeline.preset

    @cached_property
    def default_keypoint_thresholds(self) -> float | tuple[float, ...]:
        """What a request that sets no keypoint threshold gets, resolved once."""
        return self.settings.keypoint_thresholds(self.preset)

    def keypoint_thresholds(self, requested: float | None = None) -> float | tuple[float, ...]:
        """The request's keypoint threshold, else the setting's, else the preset's per keypoint."""
        return self.default_keypoint_thresholds if requested is None else requested

    def poses(self, images: Iterable[np.ndarray], frame_batch: int | None = None) -> Iterator[list[Pose]]:
        """Each RGB image's poses, in order, the detector running on ``frame_batch`` images per forward
        (default: the device's; :meth:`PosePipeline.frames`)."""
        return self.pipeline.frames(images, frame_batch)

    def answer(
        self,
        poses: Sequence[Pose],
        *,
        output_format: str = "cvat",
        threshold: float = 0.0,
        keypoint_threshold: float | None = None,
        image_id: int | str = 0,
    ) -> list[dict[str, Any]]:
        """The poses of one image as CVAT skeletons or AlphaPose results (``output_format``), persons
        under the box-score ``threshold`` left out."""
        if output_format == "coco":
            return coco_results(poses, threshold=threshold, image_id=image_id)
        return cvat_skeletons(
            poses,
            self.skeleton,
            threshold=threshold,
            keypoint_threshold=self.keypoint_thresholds(keypoint_threshold),
        )

    def predict(self, image: np.ndarray, **answer: Any) -> list[dict[str, Any]]:
        """One image's answer (:meth:`answer`'s options)."""
        return self.answer(self.pipeline(image), **answer)

    def track(
        self,
        frames: Iterable[np.ndarray],
        options: TrackerOptions | None = None,
        *,
        threshold: float = 0.0,
        frame_batch: int | None = None,
    ) -> Iterator[TrackedFrame]:
        """The tracked persons of each RGB frame, in order, as they are settled (``frame`` is the
        frame's index); the tracker sees every pose, ``threshold`` filters after it."""
        from alphapose.tracking import PoseTracker

        tracker = PoseTracker(options, oks_sigmas(self.skeleton))
        return tracker.track(enumerate(self.poses(frames, frame_batch)), threshold=threshold)

    def describe(self) -> dict[str, Any]:
        """What is loaded, for the function's start-up log and the local server's health answer; each
        weights file's sha256 is compared with the recorded ones (recorded, unrecorded or synthetic)."""
        options, pipeline = self.settings.options, self.pipeline
        names = (options.detector_spec.weights.name, options.pose_preset.checkpoint.name)
        checksums = read_checksums()
        weights = [identify_file(self.settings.weights_dir / name, checksums) for name in names]
        thresholds = self.default_keypoint_thresholds
        return {
            "preset": pipeline.preset.name,
            "detector": options.detector,
            "keypoints": list(pipeline.skeleton.keypoints),
            "device": str(pipeline.device),
            "precision": pipeline.precision.describe(),
            "engine": describe_engines(pipeline.engines),
            "weights": {str(f.path): f.state for f in weights},
            "detector_size": options.detector_input_size,
            "flip": options.flip,
            "keypoint_threshold": thresholds
            if not isinstance(thresholds, tuple)
            else f"per keypoint: {_describe_thresholds(thresholds)}",
            "threads": torch.get_num_threads(),
            "load_seconds": round(self.load_seconds, 3),
        }


def _describe_thresholds(thresholds: tuple[float, ...]) -> str:
    """``0.4 for 26, 0.05 for 110`` (runs of equal values, in keypoint order)."""
    runs: list[list[float]] = []
    for value in thresholds:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return ", ".join(f"{value:g} for {int(count)}" for value, count in runs)
