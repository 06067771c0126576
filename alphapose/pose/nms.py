"""Parametric pose NMS: one pose per person when several boxes found the same person.

The detector often returns overlapping boxes for one person, and each gives a pose. AlphaPose clusters
poses that are close in keypoint space (a score-aware distance, or enough keypoints within a box-relative
radius), keeps the best-scored pose of each cluster and replaces its keypoints by the score-weighted
average of the cluster.

Two variants, as in the reference: the body variant for up to 68 keypoints, and the whole-body variant
for the 133- and 136-keypoint sets, which weighs face and hand keypoints apart from the body. The
constants differ between models trained with the heatmap loss and the others; the reference switches
them by rewriting its module globals, here each preset names its own
:class:`~alphapose.pose.nms_params.PoseNmsParams`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alphapose.pose.nms_params import BODY_NMS, PoseNmsParams

MATCH_RADIUS_CAP = 7.0  # pixels, for counting matching keypoints
MERGE_RADIUS_CAP = 15.0  # pixels, for taking part in the weighted average

# Whole-body variant. The distance terms split the keypoints into body, face and hands by counting from
# the end (the last 110 are face and hands, the last 42 hands: right for 133 and 136 points); the
# keypoint match count uses the reference's fixed Halpe-136 boundaries (26, 94) for both sets.
FACE_HAND_JOINTS = 110
HAND_JOINTS = 42
MATCH_FACE_START, MATCH_HAND_START = 26, 94
FACE_FACTOR = 1.9  # face keypoints: wider spatial temperature and match radius
HAND_FACTOR = 0.55  # hand keypoints: narrower
FACE_WEIGHT_SCORE, HAND_WEIGHT_SCORE = 1.0, 0.1
FACE_WEIGHT_DIST, HAND_WEIGHT_DIST = 1.0, 1.5


@dataclass(frozen=True)
class MergedPose:
    """A surviving pose: the index of the box it was picked from and its merged keypoints."""

    pick: int
    keypoints: torch.Tensor  # (K, 2)
    scores: torch.Tensor  # (K,)


def pose_nms(
    boxes: torch.Tensor,
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    area_threshold: float = 0.0,
    params: PoseNmsParams = BODY_NMS,
) -> list[MergedPose]:
    """Boxes (N, 4) xyxy, keypoints (N, K, 2) and keypoint scores (N, K) -> merged poses in pick order
    (descending mean keypoint score)."""
    if params.whole_body and keypoints.shape[1] <= FACE_HAND_JOINTS:
        raise ValueError(
            f"the whole-body pose NMS needs more than {FACE_HAND_JOINTS} keypoints (133 or 136), "
            f"got {keypoints.shape[1]}; use the body parameters for this keypoint set"
        )
    scores = scores.clone()
    scores[scores == 0] = 1e-5  # a zero score would make an all-zero cluster weight 0/0
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ref_dists = params.alpha * torch.maximum(widths, heights)
    human_scores = scores.mean(dim=1)

    remaining = torch.ones(len(boxes), dtype=torch.bool)
    clusters: list[tuple[int, torch.Tensor]] = []
    while remaining.any():
        ids = remaining.nonzero()[:, 0]
        pick = int(ids[human_scores[ids].argmax()])
        dist = _distances(keypoints[pick], keypoints[ids])
        if params.whole_body:
            similarity = _whole_body_similarity(scores[pick], scores[ids], dist, params)
            matches = _whole_body_matches(dist, scores[pick], ref_dists[pick], params)
        else:
            similarity = _similarity(scores[pick], scores[ids], dist, params)
            matches = _matching_keypoints(dist, ref_dists[pick])
        duplicate = (similarity > params.gamma) | (matches >= params.match_threshold)
        # As in the reference the pick itself need not be among its duplicates; then it stays in the
        # pool, and when nothing matches only the pick leaves it.
        members = ids[duplicate] if duplicate.any() else torch.tensor([pick])
        remaining[members] = False
        clusters.append((pick, members))

    results = []
    for pick, members in clusters:
        if scores[pick].max() < params.score_threshold:
            continue
        merged_keypoints, merged_scores = _merge(
            keypoints[pick], keypoints[members], scores[members], ref_dists[pick]
        )
        if merged_scores.max() < params.score_threshold:
            continue
        extent = merged_keypoints.max(dim=0).values - merged_keypoints.min(dim=0).values
        if 1.5**2 * float(extent[0]) * float(extent[1]) < area_threshold:
            continue
        results.append(MergedPose(pick, merged_keypoints, merged_scores))
    return results


def _distances(reference: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Per-keypoint Euclidean distances (M, K) from one pose (K, 2) to others (M, K, 2)."""
    return torch.sqrt(torch.sum(torch.pow(reference[None] - others, 2), dim=2))


def _agreement(pick_scores: torch.Tensor, scores: torch.Tensor, delta1: float) -> torch.Tensor:
    return torch.tanh(pick_scores[None] / delta1) * torch.tanh(scores / delta1)


def _similarity(
    pick_scores: torch.Tensor, scores: torch.Tensor, dist: torch.Tensor, params: PoseNmsParams
) -> torch.Tensor:
    """Score agreement of keypoints within one pixel plus a soft count of nearby keypoints."""
    agreement = _agreement(pick_scores, scores, params.delta1)
    agreement = torch.where(dist <= 1, agreement, torch.zeros_like(agreement))
    return agreement.sum(dim=1) + params.mu * torch.exp(-dist / params.delta2).sum(dim=1)


def _whole_body_similarity(
    pick_scores: torch.Tensor, scores: torch.Tensor, dist: torch.Tensor, params: PoseNmsParams
) -> torch.Tensor:
    """The body, face and hand means of both terms, weighted per part.

    As in the reference, a candidate's keypoint scoring below the score threshold counts only in the
    score term (when within one pixel) and one scoring at or above it only in the spatial term; the face
    and hand spatial temperatures are the body's times their factors.
    """
    weak = scores < params.score_threshold
    agreement = _agreement(pick_scores, scores, params.delta1)
    agreement = torch.where((dist <= 1) & weak, agreement, torch.zeros_like(agreement))
    face, hands = slice(-FACE_HAND_JOINTS, -HAND_JOINTS), slice(-HAND_JOINTS, None)
    spatial = torch.exp(-dist / params.delta2)
    spatial[:, face] = torch.exp(-dist[:, face] / (params.delta2 * FACE_FACTOR))
    spatial[:, hands] = torch.exp(-dist[:, hands] / (params.delta2 * HAND_FACTOR))
    spatial[weak] = 0

    def parts(values: torch.Tensor, face_weight: float, hand_weight: float) -> torch.Tensor:
        body = values[:, :-FACE_HAND_JOINTS].mean(dim=1)
        return body + values[:, face].mean(dim=1) * face_weight + values[:, hands].mean(dim=1) * hand_weight

    return parts(agreement, FACE_WEIGHT_SCORE, HAND_WEIGHT_SCORE) + params.mu * parts(
        spatial, FACE_WEIGHT_DIST, HAND_WEIGHT_DIST
    )


def _matching_keypoints(dist: torch.Tensor, ref_dist: torch.Tensor) -> torch.Tensor:
    return torch.sum(dist / torch.clamp(ref_dist, max=MATCH_RADIUS_CAP) <= 1, dim=1)


def _whole_body_matches(
    dist: torch.Tensor, pick_scores: torch.Tensor, ref_dist: torch.Tensor, params: PoseNmsParams
) -> torch.Tensor:
    """Matching keypoints (body radius 1, face 1.9, hands 0.55 times the capped reference distance),
    rescaled as the reference does: divided by 4 x candidates x the pick's keypoints scoring above half
    the score threshold, times K. When none of the pick's keypoints is that strong nothing matches."""
    candidates, k = dist.shape
    confident = int((pick_scores > params.score_threshold / 2).sum())
    if confident == 0:
        return torch.zeros(candidates)
    ratio = dist / torch.clamp(ref_dist, max=MATCH_RADIUS_CAP)
    count = (
        torch.sum(ratio[:, :MATCH_FACE_START] <= 1, dim=1)
        + torch.sum(ratio[:, MATCH_FACE_START:MATCH_HAND_START] <= FACE_FACTOR, dim=1)
        + torch.sum(ratio[:, MATCH_HAND_START:] <= HAND_FACTOR, dim=1)
    )
    return count / torch.tensor(float(2 * candidates * confident)) / 2 * k


def _merge(
    reference: torch.Tensor, keypoints: torch.Tensor, scores: torch.Tensor, ref_dist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-weighted average of the cluster's keypoints that lie near the reference pose."""
    near = _distances(reference, keypoints) <= torch.clamp(ref_dist, max=MERGE_RADIUS_CAP)
    masked = scores * near
    weights = masked / masked.sum(dim=0)
    return (keypoints * weights[..., None]).sum(dim=0), (masked * weights).sum(dim=0)
