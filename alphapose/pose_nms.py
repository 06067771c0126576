"""Parametric pose NMS: one pose per person when several boxes found the same person.

The detector often returns overlapping boxes for one person, and each gives a pose. AlphaPose clusters
poses that are close in keypoint space (a score-aware distance, or enough keypoints within a box-relative
radius), keeps the best-scored pose of each cluster and replaces its keypoints by the score-weighted
average of the cluster. Constants are the reference's for 17/26-keypoint heatmap models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DELTA1 = 1.0  # temperature of the keypoint-score agreement term
MU = 1.7  # weight of the spatial term
DELTA2 = 2.65  # temperature of the spatial term (pixels)
GAMMA = 22.48  # similarity above which two poses are duplicates
SCORE_THRESHOLD = 0.3  # a pose whose best keypoint is weaker than this is dropped
MATCH_THRESHOLD = 5  # this many keypoints within the match radius make two poses duplicates
ALPHA = 0.1  # match radius as a fraction of the box's longer side
MATCH_RADIUS_CAP = 7.0  # pixels, for counting matching keypoints
MERGE_RADIUS_CAP = 15.0  # pixels, for taking part in the weighted average


@dataclass(frozen=True)
class MergedPose:
    """A surviving pose: the index of the box it was picked from and its merged keypoints."""

    pick: int
    keypoints: torch.Tensor  # (K, 2)
    scores: torch.Tensor  # (K,)


def pose_nms(
    boxes: torch.Tensor, keypoints: torch.Tensor, scores: torch.Tensor, area_threshold: float = 0.0
) -> list[MergedPose]:
    """Boxes (N, 4) xyxy, keypoints (N, K, 2) and keypoint scores (N, K) -> merged poses in pick order
    (descending mean keypoint score)."""
    scores = scores.clone()
    scores[scores == 0] = 1e-5  # a zero score would make an all-zero cluster weight 0/0
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ref_dists = ALPHA * torch.maximum(widths, heights)
    human_scores = scores.mean(dim=1)

    remaining = torch.ones(len(boxes), dtype=torch.bool)
    clusters: list[tuple[int, torch.Tensor]] = []
    while remaining.any():
        ids = remaining.nonzero()[:, 0]
        pick = int(ids[human_scores[ids].argmax()])
        dist = _distances(keypoints[pick], keypoints[ids])
        duplicate = (_similarity(scores[pick], scores[ids], dist) > GAMMA) | (
            _matching_keypoints(dist, ref_dists[pick]) >= MATCH_THRESHOLD
        )
        members = ids[duplicate] if duplicate.any() else torch.tensor([pick])
        remaining[members] = False
        clusters.append((pick, members))

    results = []
    for pick, members in clusters:
        if scores[pick].max() < SCORE_THRESHOLD:
            continue
        merged_keypoints, merged_scores = _merge(
            keypoints[pick], keypoints[members], scores[members], ref_dists[pick]
        )
        if merged_scores.max() < SCORE_THRESHOLD:
            continue
        extent = merged_keypoints.max(dim=0).values - merged_keypoints.min(dim=0).values
        if 1.5**2 * float(extent[0]) * float(extent[1]) < area_threshold:
            continue
        results.append(MergedPose(pick, merged_keypoints, merged_scores))
    return results


def _distances(reference: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Per-keypoint Euclidean distances (M, K) from one pose (K, 2) to others (M, K, 2)."""
    return torch.sqrt(torch.sum(torch.pow(reference[None] - others, 2), dim=2))


def _similarity(pick_scores: torch.Tensor, scores: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Score agreement of keypoints within one pixel plus a soft count of nearby keypoints."""
    agreement = torch.tanh(pick_scores[None] / DELTA1) * torch.tanh(scores / DELTA1)
    agreement = torch.where(dist <= 1, agreement, torch.zeros_like(agreement))
    return agreement.sum(dim=1) + MU * torch.exp(-dist / DELTA2).sum(dim=1)


def _matching_keypoints(dist: torch.Tensor, ref_dist: torch.Tensor) -> torch.Tensor:
    return torch.sum(dist / torch.clamp(ref_dist, max=MATCH_RADIUS_CAP) <= 1, dim=1)


def _merge(
    reference: torch.Tensor, keypoints: torch.Tensor, scores: torch.Tensor, ref_dist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-weighted average of the cluster's keypoints that lie near the reference pose."""
    near = _distances(reference, keypoints) <= torch.clamp(ref_dist, max=MERGE_RADIUS_CAP)
    masked = scores * near
    weights = masked / masked.sum(dim=0)
    return (keypoints * weights[..., None]).sum(dim=0), (masked * weights).sum(dim=0)
