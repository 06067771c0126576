"""The constants of parametric pose NMS (:func:`alphapose.pose.nms.pose_nms`), one set per kind of model.

They are data the preset table points at (each preset names its set), kept apart from the algorithm so
that the table reads without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoseNmsParams:
    """The constants of one pose NMS configuration."""

    delta1: float = 1.0  # temperature of the keypoint-score agreement term
    mu: float = 1.7  # weight of the spatial term
    delta2: float = 2.65  # temperature of the spatial term (pixels)
    gamma: float = 22.48  # similarity above which two poses are duplicates
    score_threshold: float = 0.3  # a pose whose best keypoint is weaker than this is dropped
    match_threshold: float = 5  # this many matching keypoints make two poses duplicates
    alpha: float = 0.1  # match radius as a fraction of the box's longer side
    whole_body: bool = False  # the face- and hand-aware variant (133 or 136 keypoints)


BODY_NMS = PoseNmsParams()
"""17/26/68-keypoint models, whatever their loss (the reference changes constants only for 133/136)."""
WHOLE_BODY_HEATMAP_NMS = PoseNmsParams(whole_body=True)
"""133/136-keypoint models trained with the heatmap loss."""
WHOLE_BODY_REGRESSION_NMS = PoseNmsParams(
    delta1=1.0, mu=1.65, delta2=8.0, gamma=3.6, score_threshold=0.01, match_threshold=3.0, alpha=0.15,
    whole_body=True,
)  # fmt: skip
"""133/136-keypoint models trained with the integral-regression or the combined loss."""
