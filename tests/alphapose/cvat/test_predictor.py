"""The predictor: the thresholds applied once, in one place, and the frames batched for every caller."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from alphapose.cvat.predictor import Predictor
from alphapose.cvat.settings import Config
from alphapose.pipeline import PosePipeline
from alphapose.pose.presets import get_preset
from alphapose.structures import Pose
from tools.annotate_task import LocalPoses

PRESET = get_preset("fastpose_res50_coco")
K = PRESET.skeleton.num_keypoints


def pose(box_score: float, x: float = 10.0, keypoint_score: float = 0.5) -> Pose:
    keypoints = np.stack([np.linspace(x, x + 40, K), np.linspace(20, 120, K)], axis=1).astype(np.float32)
    scores = np.full(K, keypoint_score, dtype=np.float32)
    return Pose(
        box=np.array([x, 20, x + 40, 120], dtype=np.float32),
        box_score=box_score,
        keypoints=keypoints,
        keypoint_scores=scores,
        score=float(scores.mean() + box_score + 1.25 * scores.max()),
    )


class Detector:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[tuple[Any, Any]]:
        self.batches.append(len(images))
        return [(None, None)] * len(images)


class FakePipeline:
    """The pipeline's interface: the poses of a frame are those listed for its first pixel's value;
    several frames go through the real :meth:`PosePipeline.frames` (its batching by device)."""

    preset = PRESET
    skeleton = PRESET.skeleton
    frames = PosePipeline.frames

    def __init__(self, frames: dict[int, list[Pose]], device: str = "cpu") -> None:
        self.listed, self.device = frames, torch.device(device)
        self.detector = Detector()
        self.precision = type("Precision", (), {"autocast": staticmethod(contextlib.nullcontext)})()

    def __call__(self, image: np.ndarray) -> list[Pose]:
        return self._estimate(image, None, None)

    def _estimate(self, image: np.ndarray, boxes: Any, scores: Any) -> list[Pose]:
        return self.listed[int(image[0, 0, 0])]


def frame(index: int) -> np.ndarray:
    return np.full((4, 4, 3), index, dtype=np.uint8)


def test_keypoint_thresholds_are_the_request_s_else_the_setting_s_else_the_preset_s() -> None:
    pipeline = FakePipeline({0: [pose(0.9)]})  # every keypoint scores 0.5
    assert Predictor(pipeline).keypoint_thresholds() == PRESET.keypoint_thresholds
    assert Predictor(pipeline).keypoint_thresholds(0.3) == 0.3  # over the preset's per-keypoint ones
    assert Predictor(pipeline, Config(keypoint_threshold=0.2)).keypoint_thresholds() == 0.2
    assert Predictor(pipeline, Config(keypoint_threshold=0.2)).keypoint_thresholds(0.7) == 0.7
    (person,) = Predictor(pipeline).predict(frame(0))
    assert not any(element["outside"] for element in person["elements"])  # 0.5 >= the preset's 0.4
    strict = Predictor(pipeline, Config(keypoint_threshold=0.6))
    assert strict.predict(frame(0)) == []  # every keypoint outside: the person is left out
    (person,) = strict.predict(frame(0), keypoint_threshold=0.3)  # the request's value wins
    assert not any(element["outside"] for element in person["elements"])


@pytest.mark.parametrize("output_format", ["cvat", "coco"])
def test_the_box_score_threshold_drops_persons_in_either_format(output_format: str) -> None:
    predictor = Predictor(FakePipeline({0: [pose(0.9), pose(0.3, x=200)]}))
    answer = predictor.predict(frame(0), output_format=output_format, threshold=0.5)
    assert len(answer) == 1
    assert len(predictor.predict(frame(0), output_format=output_format)) == 2


def test_frames_share_detector_forwards_by_the_device_s_batch() -> None:
    """annotate-task's local model batches its frames as predict does on a video (8 on CUDA)."""
    frames = {index: [pose(0.9)] for index in range(10)}
    on_gpu = FakePipeline(frames, device="cuda")
    poses = list(LocalPoses(Predictor(on_gpu)).poses((i, _pil(frame(i))) for i in range(10)))
    assert len(poses) == 10 and on_gpu.detector.batches == [8, 2]
    on_cpu = FakePipeline(frames)  # one frame per forward: the pipeline's own call
    assert len(list(Predictor(on_cpu).poses(frame(i) for i in range(3)))) == 3
    assert on_cpu.detector.batches == []


def test_tracking_sees_every_pose_and_the_threshold_filters_after_it() -> None:
    """A person scoring under the threshold for longer than the tracker waits for a lost person
    (max_age, 30 frames) is left out of those frames but keeps its track through them: the tracker
    saw the low-score poses continue it."""
    low = range(3, 36)
    frames = {i: [pose(0.3 if i in low else 0.9, x=10.0 + i)] for i in range(41)}
    tracked = list(Predictor(FakePipeline(frames)).track((frame(i) for i in range(41)), threshold=0.5))
    assert [t.frame for t in tracked] == list(range(41))
    assert [len(t.persons) for t in tracked] == [0 if i in low else 1 for i in range(41)]
    assert len({track_id for t in tracked for track_id, _ in t.persons}) == 1


def _pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(image)
