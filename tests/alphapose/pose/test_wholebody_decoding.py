"""Integral-regression decoding, the combined split and the whole-body pose NMS, against values worked
out by hand from the official formulas (AlphaPose c60106d: alphapose/utils/transforms.py
``heatmap_to_coord_simple_regress``, ``_integral_tensor``, ``norm_heatmap``; alphapose/utils/writer.py;
alphapose/utils/pPose_nms.py ``pose_nms_fullbody``, ``get_parametric_distance``, ``PCK_match_fullbody``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alphapose.pose.nms import _whole_body_matches, _whole_body_similarity, pose_nms
from alphapose.pose.nms_params import (
    BODY_NMS,
    WHOLE_BODY_HEATMAP_NMS,
    WHOLE_BODY_REGRESSION_NMS,
    PoseNmsParams,
)
from alphapose.pose.presets import PRESETS, get_preset
from alphapose.pose.transforms import decode_outputs, decode_regression

H, W = 64, 48
# A crop box twice the heatmap size: heatmap cell (x, y) lands on image (148 + 2 (x - 24), 264 + 2 (y - 32)).
CROP_BOX = np.array([[100.0, 200.0, 196.0, 328.0]], dtype=np.float32)
FAR = -40.0  # sigmoid(-40) = 4e-18: 3070 such cells weigh nothing next to the chosen ones


def image_point(x: float, y: float) -> tuple[float, float]:
    return 148 + 2 * (x - 24), 264 + 2 * (y - 32)


def regression_map(cells: dict[tuple[int, int], float]) -> torch.Tensor:
    """One (H, W) logit map whose sigmoid is ``p`` at each (x, y) cell and about 0 elsewhere."""
    logits = torch.full((H, W), FAR)
    for (x, y), p in cells.items():
        logits[y, x] = math.log(p / (1 - p))
    return logits


def test_regression_is_the_sigmoid_weighted_mean_cell_and_the_sigmoid_maximum() -> None:
    # sigmoid 0.8 at (5, 7) and 0.2 at (45, 60): normalised weights 0.8 and 0.2, so
    # x = 0.8 * 5 + 0.2 * 45 = 13, y = 0.8 * 7 + 0.2 * 60 = 17.6; the score is the larger sigmoid, 0.8.
    maps = regression_map({(5, 7): 0.8, (45, 60): 0.2})[None, None]
    keypoints, scores = decode_regression(maps, CROP_BOX)
    np.testing.assert_allclose(keypoints[0, 0], image_point(13, 17.6), atol=1e-3)
    assert scores[0, 0] == pytest.approx(0.8, abs=1e-6)


def test_regression_of_two_equal_cells_is_their_midpoint_whatever_their_height() -> None:
    for p in (0.3, 0.5, 0.95):
        maps = regression_map({(10, 20): p, (14, 20): p})[None, None]
        keypoints, scores = decode_regression(maps, CROP_BOX)
        np.testing.assert_allclose(keypoints[0, 0], image_point(12, 20), atol=1e-3)
        assert scores[0, 0] == pytest.approx(p, abs=1e-6)


def test_a_flat_map_decodes_to_the_mean_cell_and_scores_its_sigmoid() -> None:
    # All cells equal: x = mean(0..47) = 23.5, y = mean(0..63) = 31.5; score sigmoid(0) = 0.5.
    keypoints, scores = decode_regression(torch.zeros(1, 1, H, W), CROP_BOX)
    np.testing.assert_allclose(keypoints[0, 0], image_point(23.5, 31.5), atol=1e-3)
    assert scores[0, 0] == pytest.approx(0.5)


def heatmap_channel() -> torch.Tensor:
    """Peak 0.9 at (30, 40), right neighbour above the left one, equal ones above and below: the
    reference moves it a quarter cell right, to (30.25, 40)."""
    heatmap = torch.zeros(H, W)
    heatmap[40, 30], heatmap[40, 31], heatmap[40, 29] = 0.9, 0.5, 0.1
    return heatmap


@pytest.mark.parametrize(("k", "regression_joints"), [(136, 110), (133, 110), (68, 42)])
def test_combined_decodes_the_first_joints_as_heatmaps_and_the_last_by_regression(
    k: int, regression_joints: int
) -> None:
    outputs = torch.empty(1, k, H, W)
    outputs[0, : k - regression_joints] = heatmap_channel()
    outputs[0, k - regression_joints :] = regression_map({(5, 7): 0.8, (45, 60): 0.2})
    keypoints, scores = decode_outputs(outputs, CROP_BOX, regression_joints)
    split = k - regression_joints
    np.testing.assert_allclose(keypoints[0, :split], [image_point(30.25, 40)] * split, atol=1e-3)
    np.testing.assert_allclose(scores[0, :split], 0.9, atol=1e-6)
    np.testing.assert_allclose(keypoints[0, split:], [image_point(13, 17.6)] * regression_joints, atol=1e-3)
    np.testing.assert_allclose(scores[0, split:], 0.8, atol=1e-6)


def test_the_split_counts_from_the_end_and_is_checked() -> None:
    outputs = torch.stack([heatmap_channel()] * 3)[None]
    heatmap_only = decode_outputs(outputs, CROP_BOX, 0)
    np.testing.assert_allclose(heatmap_only[0][0], [image_point(30.25, 40)] * 3, atol=1e-3)
    all_regression = decode_outputs(outputs, CROP_BOX, 3)[1]
    assert not np.allclose(all_regression, 0.9)  # sigmoid maxima, not heatmap maxima
    with pytest.raises(ValueError, match="regression_joints must be between 0 and 3"):
        decode_outputs(outputs, CROP_BOX, 4)


def test_presets_decode_and_threshold_by_the_loss_they_were_trained_with() -> None:
    # writer.py: vis_thres 0.4 for MSELoss joints, 0.05 for regression ones; Combined: the last 110
    # (42 for 68 keypoints) are regression joints.
    combined = get_preset("fastpose_dcn_res50_wholebody136")
    assert combined.regression_joints == 110
    np.testing.assert_allclose(combined.keypoint_thresholds, [0.4] * 26 + [0.05] * 110)
    assert get_preset("fastpose_res50_wholebody136").regression_joints == 136
    assert get_preset("fastpose_res50_halpe136").regression_joints == 136
    assert get_preset("fastpose_res50_halpe136_heatmap").regression_joints == 0
    assert get_preset("fastpose_res50_wholebody133_combined").regression_joints == 110
    noface = get_preset("fastpose_dcn_res50_halpe68")
    np.testing.assert_allclose(noface.keypoint_thresholds, [0.4] * 26 + [0.05] * 42)
    np.testing.assert_allclose(get_preset("fastpose_res50_coco").keypoint_thresholds, [0.4] * 17)


def test_nms_constants_per_preset() -> None:
    # pPose_nms.py: module constants, and the set pose_nms switches to for 133/136 keypoints when the
    # model was not trained with the heatmap loss.
    assert PoseNmsParams(1.0, 1.7, 2.65, 22.48, 0.3, 5, 0.1, whole_body=False) == BODY_NMS
    assert PoseNmsParams(1.0, 1.7, 2.65, 22.48, 0.3, 5, 0.1, whole_body=True) == WHOLE_BODY_HEATMAP_NMS
    assert PoseNmsParams(1.0, 1.65, 8.0, 3.6, 0.01, 3.0, 0.15, whole_body=True) == WHOLE_BODY_REGRESSION_NMS
    for preset in PRESETS.values():
        k, loss_is_heatmap = preset.skeleton.num_keypoints, preset.regression_joints == 0
        if k in (133, 136):
            assert preset.nms == (WHOLE_BODY_HEATMAP_NMS if loss_is_heatmap else WHOLE_BODY_REGRESSION_NMS)
        else:
            assert preset.nms == BODY_NMS


K = 136


def shifted_pair(d: float) -> torch.Tensor:
    base = torch.stack([torch.arange(K) % 12 * 9.0, torch.arange(K) // 12 * 11.0], dim=1)
    return torch.stack([base, base + torch.tensor([d, 0.0])])


def hand_similarity(d: float, p: PoseNmsParams) -> float:
    """get_parametric_distance with use_dist_mask for a pose shifted by d on every keypoint, all scores
    at or above the threshold (so the score term is empty): mu x (body + face x 1.0 + hands x 1.5)."""
    return p.mu * (
        math.exp(-d / p.delta2) + math.exp(-d / (p.delta2 * 1.9)) + 1.5 * math.exp(-d / (p.delta2 * 0.55))
    )


@pytest.mark.parametrize("d", [0.0, 3.0, 4.0, 6.0])
def test_whole_body_similarity_weights_face_and_hands_apart(d: float) -> None:
    p = WHOLE_BODY_REGRESSION_NMS
    poses, scores = shifted_pair(d), torch.full((2, K), 0.9)
    dist = torch.sqrt(((poses[0][None] - poses) ** 2).sum(-1))
    similarity = _whole_body_similarity(scores[0], scores, dist, p)
    assert float(similarity[0]) == pytest.approx(1.65 * 3.5, rel=1e-5)
    assert float(similarity[1]) == pytest.approx(hand_similarity(d, p), rel=1e-5)
    # 3.6 lies between d = 3 (3.740) and d = 4 (3.266)
    assert (float(similarity[1]) > p.gamma) == (d <= 3)


def test_whole_body_similarity_counts_weak_keypoints_only_in_the_score_term() -> None:
    p = WHOLE_BODY_REGRESSION_NMS
    poses = shifted_pair(0.5)
    scores = torch.full((2, K), 0.9)
    scores[1, :26] = 0.008  # below the 0.01 threshold: body points of the candidate are "weak"
    dist = torch.sqrt(((poses[0][None] - poses) ** 2).sum(-1))
    similarity = float(_whole_body_similarity(scores[0], scores, dist, p)[1])
    body_score = math.tanh(0.9) * math.tanh(0.008)  # within one pixel and weak: mean over the 26 body points
    expected = body_score + p.mu * (0 + math.exp(-0.5 / (8 * 1.9)) + 1.5 * math.exp(-0.5 / (8 * 0.55)))
    assert similarity == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("d", "ref", "confident", "expected"),
    [
        # count = body (d/ref <= 1) + face (<= 1.9) + hands (<= 0.55); rescaled count * K / (4 M c), M = 2
        (4.0, 7.0, K, (26 + 68 + 0) * K / (4 * 2 * K)),
        (1.0, 7.0, K, (26 + 68 + 42) * K / (4 * 2 * K)),
        (4.0, 7.0, 10, (26 + 68 + 0) * K / (4 * 2 * 10)),
        (6.0, 3.0, K, 0.0),
        (13.0, 7.0, K, 68 * K / (4 * 2 * K)),  # 13 / 7 = 1.86: face points only
        # the radius is capped at 7: 4 / 7 = 0.57 > 0.55 leaves the hands out (4 / 20 would not)
        (4.0, 20.0, K, (26 + 68 + 0) * K / (4 * 2 * K)),
    ],
)
def test_whole_body_match_count(d: float, ref: float, confident: int, expected: float) -> None:
    p = WHOLE_BODY_REGRESSION_NMS
    poses = shifted_pair(d)
    dist = torch.sqrt(((poses[0][None] - poses) ** 2).sum(-1))
    pick_scores = torch.full((K,), 0.001)
    pick_scores[:confident] = 0.9
    matches = _whole_body_matches(dist, pick_scores, torch.tensor(ref), p)
    assert float(matches[1]) == pytest.approx(expected, rel=1e-6)


def test_whole_body_match_count_is_zero_when_no_pick_keypoint_is_confident() -> None:
    dist = torch.zeros(2, K)
    matches = _whole_body_matches(dist, torch.full((K,), 0.001), torch.tensor(7.0), WHOLE_BODY_REGRESSION_NMS)
    assert matches.tolist() == [0.0, 0.0]


def test_whole_body_pose_nms_merges_near_duplicates_and_keeps_distinct_persons() -> None:
    # Boxes 20 px wide: the match radius 0.15 x 20 = 3. A shift of 3 matches body and face points
    # (26 + 68, rescaled 11.75 >= 3) and is similar (3.74 > 3.6): merged with weights 0.9 and 0.6.
    # A shift of 6 matches nothing (6 / 3 = 2 > 1.9) and is not similar (2.52): both kept.
    for d, kept in ((3.0, 1), (6.0, 2)):
        poses = shifted_pair(d)
        scores = torch.stack([torch.full((K,), 0.9), torch.full((K,), 0.6)])
        boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0]])
        result = pose_nms(boxes, poses, scores, params=WHOLE_BODY_REGRESSION_NMS)
        assert len(result) == kept and result[0].pick == 0
        if kept == 1:
            torch.testing.assert_close(result[0].keypoints, (0.9 * poses[0] + 0.6 * poses[1]) / 1.5)
            torch.testing.assert_close(result[0].scores, torch.full((K,), (0.81 + 0.36) / 1.5))


def test_whole_body_nms_refuses_a_body_keypoint_set() -> None:
    with pytest.raises(ValueError, match="more than 110 keypoints"):
        pose_nms(torch.zeros(1, 4), torch.zeros(1, 68, 2), torch.ones(1, 68), params=WHOLE_BODY_HEATMAP_NMS)
