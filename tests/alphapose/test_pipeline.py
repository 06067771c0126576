"""The whole pipeline on CPU with official-format random weights."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from alphapose import PosePipeline
from alphapose.errors import SyntheticWeightsWarning, WeightsError
from alphapose.pose.transforms import box_to_center_scale, center_scale_to_box


@pytest.fixture(scope="module")
def pipeline(weights_dir: Path) -> PosePipeline:
    return PosePipeline.from_weights_dir(weights_dir, device="cpu", detector_size=320)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def test_synthetic_weights_are_named_by_a_warning_and_an_attribute(
    weights_dir: Path, unmarked_weights_dir: Path, image: np.ndarray
) -> None:
    with pytest.warns(SyntheticWeightsWarning, match="synthetic random weights") as caught:
        pipeline = PosePipeline.from_weights_dir(weights_dir, device="cpu", detector_size=160)
    assert caught[0].filename == __file__  # it points at the caller's line
    assert pipeline.synthetic_weights == (
        weights_dir / "yolov3-spp.weights",
        weights_dir / "fast_res50_256x192.pth",
    )
    # What the README says synthetic files give: one person covering the image, keypoint scores above 1.
    (pose,) = pipeline(image)
    np.testing.assert_allclose(pose.box, [0, 0, 640, 480])
    assert pose.keypoint_scores.min() > 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", SyntheticWeightsWarning)
        official = PosePipeline.from_weights_dir(unmarked_weights_dir, device="cpu", detector_size=160)
    assert official.synthetic_weights == ()


def _assert_inside_crop_box(keypoints: np.ndarray, box: np.ndarray) -> None:
    center, scale = box_to_center_scale(box[None], aspect_ratio=0.75)
    x0, y0, x1, y1 = center_scale_to_box(center, scale)[0]
    assert (keypoints[:, 0] >= x0).all() and (keypoints[:, 0] <= x1).all()
    assert (keypoints[:, 1] >= y0).all() and (keypoints[:, 1] <= y1).all()


def test_real_size_image_gives_well_formed_poses(pipeline: PosePipeline, image: np.ndarray) -> None:
    poses = pipeline(image)
    assert len(poses) == 1  # the synthetic detector finds exactly one person covering the image
    pose = poses[0]
    np.testing.assert_allclose(pose.box, [0, 0, 640, 480])
    assert pose.box_score == pytest.approx(0.9, abs=1e-4)
    assert pose.keypoints.shape == (17, 2) and pose.keypoints.dtype == np.float32
    assert pose.keypoint_scores.shape == (17,) and np.isfinite(pose.keypoint_scores).all()
    expected = pose.keypoint_scores.mean() + pose.box_score + 1.25 * pose.keypoint_scores.max()
    assert pose.score == pytest.approx(float(expected), rel=1e-6)
    _assert_inside_crop_box(pose.keypoints, pose.box)


def test_estimate_on_given_boxes_matches_batch_size_one(pipeline: PosePipeline, image: np.ndarray) -> None:
    boxes = np.array([[10, 20, 110, 260], [300, 50, 420, 400], [500, 300, 630, 470]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    batched = pipeline.estimate(image, boxes, scores)
    one_by_one = PosePipeline(
        pipeline.detector, pipeline.pose_model, pipeline.preset, pipeline.device, max_batch=1
    )
    single = one_by_one.estimate(image, boxes, scores)
    assert len(batched) == len(single) >= 1
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
        np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, atol=1e-5)
        _assert_inside_crop_box(a.keypoints, a.box)


def test_flip_test_averages_with_the_mirrored_crop(pipeline: PosePipeline, image: np.ndarray) -> None:
    flip = PosePipeline(pipeline.detector, pipeline.pose_model, pipeline.preset, pipeline.device, flip=True)
    box = np.array([[100, 40, 300, 440]], dtype=np.float32)
    plain, flipped = pipeline.estimate(image, box, [0.9]), flip.estimate(image, box, [0.9])
    assert len(flipped) == 1
    _assert_inside_crop_box(flipped[0].keypoints, flipped[0].box)
    assert not np.allclose(plain[0].keypoint_scores, flipped[0].keypoint_scores)


# alphapose/datasets/mscoco.py Mscoco.joint_pairs, written out (not read from our skeleton table)
OFFICIAL_COCO_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def official_flip_back(heatmaps: torch.Tensor) -> torch.Tensor:
    """The official flip_heatmap(shift=True): mirror, swap each pair, shift one column right (from a copy)."""
    out = heatmaps.flip(-1).clone()
    for a, b in OFFICIAL_COCO_PAIRS:
        out[:, [a, b]] = out[:, [b, a]]
    shifted = out.clone()
    shifted[..., 1:] = out[..., :-1]
    return shifted


def test_heatmaps_with_flip_equal_the_official_average(pipeline: PosePipeline) -> None:
    batch = torch.rand(3, 3, 256, 192, generator=torch.Generator().manual_seed(0)) - 0.45
    flip = PosePipeline(pipeline.detector, pipeline.pose_model, pipeline.preset, pipeline.device, flip=True)
    with torch.inference_mode():
        expected = (pipeline.pose_model(batch) + official_flip_back(pipeline.pose_model(batch.flip(-1)))) / 2
    torch.testing.assert_close(flip.heatmaps(batch), expected, atol=1e-4, rtol=1e-4)


def test_no_boxes_no_poses(pipeline: PosePipeline, image: np.ndarray) -> None:
    assert pipeline.estimate(image, np.zeros((0, 4)), np.zeros(0)) == []


def test_detector_that_finds_nobody(empty_weights_dir: Path, image: np.ndarray) -> None:
    empty = PosePipeline.from_weights_dir(empty_weights_dir, device="cpu", detector_size=320)
    assert empty(image) == []


def test_halpe_preset_gives_26_keypoints(weights_dir: Path, image: np.ndarray) -> None:
    halpe = PosePipeline.from_weights_dir(
        weights_dir, preset="fastpose_res50_halpe26", device="cpu", detector_size=320
    )
    poses = halpe.estimate(image, np.array([[100, 40, 300, 440]]), np.array([0.8]))
    assert halpe.skeleton.num_keypoints == 26 and poses[0].keypoints.shape == (26, 2)


def test_missing_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"yolov3-spp\.weights, fast_res50_256x192\.pth"):
        PosePipeline.from_weights_dir(tmp_path)


def test_rejects_non_rgb_input(pipeline: PosePipeline) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        pipeline(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        pipeline(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):  # the pose stage alone checks it too
        pipeline.estimate(np.zeros((10, 10), dtype=np.uint8), np.zeros((1, 4)), np.ones(1))
