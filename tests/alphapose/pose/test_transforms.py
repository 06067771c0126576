"""Crop and decode geometry against known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from alphapose.pose.skeletons import COCO17
from alphapose.pose.transforms import (
    affine_matrix,
    box_to_center_scale,
    center_scale_to_box,
    crop_persons,
    decode_heatmaps,
    flip_heatmaps,
    normalize_crop,
)

INPUT = (256, 192)
# Written out, not read from alphapose.pose.transforms: the official SimpleTransform.test_transform subtracts
# 0.406, 0.457, 0.480 from channels 0, 1, 2 = R, G, B (alphapose/utils/presets/simple_transform.py).
PIXEL_MEANS = (0.406, 0.457, 0.480)


def test_box_to_crop_box_known_answer() -> None:
    center, scale = box_to_center_scale(np.array([[100, 50, 300, 400]]), aspect_ratio=0.75)
    np.testing.assert_allclose(center, [[200, 225]])
    np.testing.assert_allclose(scale, [[328.125, 437.5]])  # tall box: width widened to 0.75 h, then x1.25
    np.testing.assert_allclose(center_scale_to_box(center, scale), [[35.9375, 6.25, 364.0625, 443.75]])
    matrix = affine_matrix(center[0], scale[0, 0], INPUT)
    np.testing.assert_allclose(matrix, [[0.58514, 0, -21.0286], [0, 0.58514, -3.6571]], atol=1e-4)


def test_wide_box_is_made_taller() -> None:
    _, scale = box_to_center_scale(np.array([[0, 0, 300, 100]]), aspect_ratio=0.75)
    np.testing.assert_allclose(scale, [[375.0, 500.0]])


def test_inverse_matrix_undoes_forward() -> None:
    center, width = np.array([412.3, 97.8], dtype=np.float32), np.float32(251.7)
    forward = np.vstack([affine_matrix(center, width, INPUT), [0, 0, 1]])
    inverse = np.vstack([affine_matrix(center, width, INPUT, inverse=True), [0, 0, 1]])
    np.testing.assert_allclose(forward @ inverse, np.eye(3), atol=1e-6)


def test_normalize_crop_subtracts_means_per_rgb_channel() -> None:
    crop = np.zeros((2, 2, 3), dtype=np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 255, 0, 102
    chw = normalize_crop(crop)
    assert chw.shape == (3, 2, 2) and chw.dtype == np.float32
    np.testing.assert_allclose(
        chw[:, 0, 0], [1 - PIXEL_MEANS[0], -PIXEL_MEANS[1], 0.4 - PIXEL_MEANS[2]], atol=1e-6
    )


def test_normalize_crop_keeps_reference_quirk_on_near_black_crops() -> None:
    crop = np.ones((2, 2, 3), dtype=np.uint8)  # max == 1: the reference does not divide by 255
    np.testing.assert_allclose(normalize_crop(crop)[:, 0, 0], 1 - np.asarray(PIXEL_MEANS), atol=1e-6)


def test_crop_samples_the_crop_box_with_zero_border() -> None:
    image = np.full((120, 80, 3), 200, dtype=np.uint8)
    batch, crop_boxes = crop_persons(image, np.array([[10, 10, 70, 110]]), INPUT)
    assert batch.shape == (1, 3, 256, 192)
    np.testing.assert_allclose(crop_boxes[0], [-6.875, -2.5, 86.875, 122.5])
    rgb = batch[0] + torch.tensor(PIXEL_MEANS)[:, None, None]
    assert torch.allclose(rgb[:, 0, 0], torch.zeros(3), atol=1e-6)  # outside the image: black border
    assert torch.allclose(rgb[:, 128, 96], torch.full((3,), 200 / 255), atol=1e-6)


def _heatmap_with_peak(x: int, y: int, right: float, down: float) -> np.ndarray:
    hm = np.zeros((1, 1, 64, 48), dtype=np.float32)
    hm[0, 0, y, x] = 1.0
    hm[0, 0, y, x + 1], hm[0, 0, y, x - 1] = right, 0.5
    hm[0, 0, y + 1, x], hm[0, 0, y - 1, x] = down, 0.5
    return hm


@pytest.mark.parametrize("box", [[0, 0, 192, 256], [35.9375, 6.25, 364.0625, 443.75], [-40, 10, 500, 730]])
def test_peak_decodes_to_known_image_point(box: list[float]) -> None:
    hm = _heatmap_with_peak(20, 30, right=0.8, down=0.2)  # refine +0.25 in x, -0.25 in y
    keypoints, scores = decode_heatmaps(hm, np.array([box], dtype=np.float32))
    x0, y0, x1, y1 = box
    expected = [x0 + 20.25 * (x1 - x0) / 48, y0 + 29.75 * (y1 - y0) / 64]
    np.testing.assert_allclose(keypoints[0, 0], expected, rtol=1e-5)
    assert scores[0, 0] == pytest.approx(1.0)


def test_border_peak_is_not_refined_and_nonpositive_peak_goes_to_origin() -> None:
    hm = np.full((1, 2, 64, 48), -1.0, dtype=np.float32)
    hm[0, 0, 10, 1], hm[0, 0, 10, 2] = 0.9, 0.5  # x == 1: outside the strict refinement bounds
    hm[0, 1, 40, 30] = -0.2  # the best value is negative: the reference puts the point at cell (0, 0)
    keypoints, scores = decode_heatmaps(hm, np.array([[0, 0, 48, 64]], dtype=np.float32))
    np.testing.assert_allclose(keypoints[0], [[1, 10], [0, 0]], atol=1e-5)
    np.testing.assert_allclose(scores[0], [0.9, -0.2])


def test_bright_square_round_trips_through_crop_and_decode() -> None:
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    cx, cy = 237, 141
    image[cy - 4 : cy + 5, cx - 4 : cx + 5] = 255
    for box in ([150, 40, 330, 400], [100, 100, 400, 220]):
        batch, crop_boxes = crop_persons(image, np.array([box]), INPUT)
        brightness = (batch[0, 0] + PIXEL_MEANS[0]).reshape(1, 1, 256, 192)
        heatmap = torch.nn.functional.avg_pool2d(brightness, 4).numpy()  # a 64x48 "heatmap" of the crop
        keypoints, _ = decode_heatmaps(heatmap, crop_boxes)
        cell = (crop_boxes[0, 2] - crop_boxes[0, 0]) / 48
        assert abs(keypoints[0, 0, 0] - cx) <= cell and abs(keypoints[0, 0, 1] - cy) <= cell


def test_crop_matches_plain_opencv_warp_of_the_closed_form_matrix() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    box = np.array([[50.5, 20.25, 210.75, 280.0]])
    batch, crop_boxes = crop_persons(image, box, INPUT)
    x0, y0, x1, _ = crop_boxes[0]
    s = 192 / (x1 - x0)
    matrix = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]])
    expected = cv2.warpAffine(image, matrix, (192, 256), flags=cv2.INTER_LINEAR)
    got = (batch[0].numpy() + np.asarray(PIXEL_MEANS)[:, None, None]) * 255
    assert np.abs(got.transpose(1, 2, 0) - expected).max() <= 1.0 + 1e-3


def test_flip_heatmaps_mirrors_swaps_and_shifts_from_a_copy() -> None:
    hm = torch.zeros(1, 17, 64, 48)
    hm[0, 1, 10, 5] = 1.0  # left eye in the flipped crop
    hm[0, 0, 3, 47] = 0.7  # nose at the last column: lands at column 0, then shifted to 1
    original = hm.clone()
    out = flip_heatmaps(hm, COCO17)
    assert torch.equal(hm, original)
    assert (
        out[0, 2, 10, 48 - 1 - 5 + 1] == 1.0 and out[0, 1].sum() == 0
    )  # now the right eye, one column right
    assert out[0, 0, 3, 1] == pytest.approx(0.7) and out[0, 0, 3, 0] == pytest.approx(
        0.7
    )  # column 0 keeps its value
    assert out[0, 0].sum() == pytest.approx(1.4)
