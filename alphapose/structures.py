"""What the pipeline finds: one :class:`Pose` per person, and the score AlphaPose ranks persons by.

A leaf module (numpy only), so that every layer can name a pose without importing the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    """One person. Coordinates are image pixels; ``score`` is AlphaPose's proposal score
    (mean keypoint score + box score + 1.25 x best keypoint score), not a probability."""

    box: np.ndarray  # (4,) float32 xyxy detector box
    box_score: float  # detector objectness in [0, 1]
    keypoints: np.ndarray  # (K, 2) float32
    keypoint_scores: np.ndarray  # (K,) float32 heatmap maxima (sigmoid maxima for regression joints)
    score: float


def pose_score(keypoint_scores: np.ndarray, box_score: float) -> float:
    """AlphaPose's proposal score of a person: mean keypoint score + box score + 1.25 x best keypoint
    score (float32 keypoint scores, as the pipeline computes it)."""
    return float(keypoint_scores.mean() + box_score + 1.25 * keypoint_scores.max())


def box_score_of(score: float, keypoint_scores: np.ndarray) -> float:
    """The box score :func:`pose_score` was given, from the pose score and the keypoint scores: for
    answers that carry only the pose score (AlphaPose's results JSON). Exact up to the float32 rounding
    of the pose score, a few 1e-7."""
    return float(score) - float(keypoint_scores.mean()) - 1.25 * float(keypoint_scores.max())
