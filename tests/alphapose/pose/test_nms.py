"""Parametric pose NMS on hand-built poses."""

from __future__ import annotations

import pytest
import torch

from alphapose.pose.nms import pose_nms

K = 17


def _pose(x0: float, y0: float) -> torch.Tensor:
    """A 17-keypoint pose spread over a 100x160 box whose top-left corner is (x0, y0)."""
    grid = torch.stack([torch.arange(K) % 4 * 30.0, torch.arange(K) // 4 * 38.0], dim=1)
    return grid + torch.tensor([x0, y0])


def _box(x0: float, y0: float) -> list[float]:
    return [x0, y0, x0 + 100, y0 + 160]


def test_near_duplicates_merge_into_the_score_weighted_average() -> None:
    a, b = _pose(10, 20), _pose(10, 20) + torch.tensor([0.6, -0.4])
    keypoints = torch.stack([a, b])
    scores = torch.stack([torch.full((K,), 0.9), torch.full((K,), 0.6)])
    boxes = torch.tensor([_box(10, 20), _box(11, 19)])
    result = pose_nms(boxes, keypoints, scores)
    assert len(result) == 1 and result[0].pick == 0
    expected = (0.9 * a + 0.6 * b) / 1.5
    torch.testing.assert_close(result[0].keypoints, expected)
    torch.testing.assert_close(result[0].scores, torch.full((K,), (0.9**2 + 0.6**2) / 1.5))


def test_distinct_people_stay_in_descending_mean_score_order() -> None:
    keypoints = torch.stack([_pose(0, 0), _pose(300, 0), _pose(0, 400)])
    scores = torch.stack([torch.full((K,), s) for s in (0.5, 0.9, 0.7)])
    boxes = torch.tensor([_box(0, 0), _box(300, 0), _box(0, 400)])
    result = pose_nms(boxes, keypoints, scores)
    assert [r.pick for r in result] == [1, 2, 0]
    for r in result:
        torch.testing.assert_close(r.keypoints, keypoints[r.pick])


def test_weak_pose_is_dropped() -> None:
    keypoints = torch.stack([_pose(0, 0), _pose(300, 0)])
    scores = torch.stack([torch.full((K,), 0.9), torch.full((K,), 0.29)])
    boxes = torch.tensor([_box(0, 0), _box(300, 0)])
    assert [r.pick for r in pose_nms(boxes, keypoints, scores)] == [0]


def test_far_keypoints_of_a_duplicate_do_not_pull_the_average() -> None:
    a = _pose(10, 20)
    b = a.clone()
    b[0] += torch.tensor([40.0, 0.0])  # one keypoint far away; the other 16 coincide, so it is a duplicate
    keypoints = torch.stack([a, b])
    scores = torch.stack([torch.full((K,), 0.9), torch.full((K,), 0.8)])
    boxes = torch.tensor([_box(10, 20), _box(10, 20)])
    result = pose_nms(boxes, keypoints, scores)
    assert len(result) == 1
    torch.testing.assert_close(result[0].keypoints[0], a[0])  # outside the merge radius: only the pick counts
    torch.testing.assert_close(result[0].keypoints[1:], a[1:])


def test_match_radius_depends_on_box_size() -> None:
    # Poses 5 px apart on every keypoint: a duplicate for a large box (radius min(0.1*600, 7) = 7 px),
    # distinct for a small one (radius 0.1*40 = 4 px).
    a, b = _pose(0, 0), _pose(0, 0) + torch.tensor([3.0, 4.0])
    keypoints, scores = torch.stack([a, b]), torch.full((2, K), 0.8)
    large = torch.tensor([[0.0, 0.0, 400.0, 600.0]] * 2)
    small = torch.tensor([[0.0, 0.0, 30.0, 40.0]] * 2)
    assert len(pose_nms(large, keypoints, scores)) == 1
    assert len(pose_nms(small, keypoints, scores)) == 2


def test_zero_scores_are_floored_and_area_threshold_applies() -> None:
    keypoints = _pose(0, 0)[None]
    scores = torch.zeros(1, K)
    scores[0, 0] = 0.9
    result = pose_nms(torch.tensor([_box(0, 0)]), keypoints, scores)
    assert len(result) == 1 and float(result[0].scores[1]) == pytest.approx(1e-5)
    assert pose_nms(torch.tensor([_box(0, 0)]), keypoints, scores, area_threshold=1e9) == []
