"""The function's two answer formats: CVAT skeletons and AlphaPose's own results JSON.

CVAT format (what auto-annotation consumes; rules in CVAT's ``lambda_manager`` and serializers):
one ``skeleton`` per person with ALL keypoints as ``points`` elements in the skeleton's order, labels
equal to the advertised sublabel names, coordinates as plain finite floats. A keypoint scoring below
the keypoint threshold is sent with ``outside: true`` (CVAT hides it but keeps the slot), and a person
whose every keypoint is outside is left out, as CVAT would drop it anyway.

The person ``confidence`` is the detector's objectness for the person box, a probability in [0, 1];
that is the number CVAT's ``threshold`` is compared with. (AlphaPose's own pose score, mean keypoint
score + box score + 1.25 * max keypoint score, is not a probability; it appears in the coco format.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from alphapose.cvat.spec import PERSON_LABEL
from alphapose.pose.skeletons import Skeleton

if TYPE_CHECKING:
    from alphapose.structures import Pose

# what a request's "format" and the tools' --format choose between
OUTPUT_FORMATS = ("cvat", "coco")
COCO_PERSON_CATEGORY = 1


def cvat_skeletons(
    poses: Sequence[Pose],
    skeleton: Skeleton,
    *,
    threshold: float,
    keypoint_threshold: float | Sequence[float],
    label: str = PERSON_LABEL,
) -> list[dict[str, Any]]:
    """One CVAT skeleton per person whose box score is at least ``threshold``.

    ``keypoint_threshold`` is one value for every keypoint or one per keypoint (a whole-body preset's
    defaults: its regression keypoints score on another scale than its heatmap ones).
    """
    thresholds = per_keypoint(keypoint_threshold, skeleton.num_keypoints, f"skeleton {skeleton.name} of ")
    results = []
    for pose in poses:
        if not pose.box_score >= threshold:
            continue
        elements = _elements(pose, skeleton, thresholds)
        if all(element["outside"] for element in elements):
            continue
        results.append(
            {
                "label": label,
                "type": "skeleton",
                "confidence": float(pose.box_score),
                "attributes": [],
                "elements": elements,
            }
        )
    return results


def per_keypoint(keypoint_threshold: float | Sequence[float], count: int, owner: str = "") -> list[float]:
    """One threshold per keypoint from one value or one per keypoint; a ``ValueError`` for a list of
    another length (``owner`` says whose keypoints, e.g. ``"skeleton coco17 of "``)."""
    if isinstance(keypoint_threshold, int | float):
        return [float(keypoint_threshold)] * count
    thresholds = [float(t) for t in keypoint_threshold]
    if len(thresholds) != count:
        raise ValueError(f"{len(thresholds)} keypoint thresholds for {owner}{count} keypoints")
    return thresholds


def coco_results(poses: Sequence[Pose], *, threshold: float, image_id: int | str) -> list[dict[str, Any]]:
    """AlphaPose's ``alphapose-results.json`` entries (its default "coco" form) for one image.

    Fields and their order follow the official writer: ``keypoints`` is x, y, score per keypoint,
    ``score`` the pose score, ``box`` the detector box as x, y, w, h. ``idx`` is the person's position
    in this answer: the official value is a tracking id that carries no information without tracking.
    ``threshold`` drops persons by box score, as in the CVAT format, so both formats list the same people.
    """
    results = []
    for pose in poses:
        if not pose.box_score >= threshold:
            continue
        keypoints = []
        for (x, y), score in zip(pose.keypoints.tolist(), pose.keypoint_scores.tolist(), strict=True):
            keypoints += [x, y, score]
        x1, y1, x2, y2 = (float(v) for v in pose.box)
        results.append(
            {
                "image_id": image_id,
                "category_id": COCO_PERSON_CATEGORY,
                "keypoints": keypoints,
                "score": float(pose.score),
                "box": [x1, y1, x2 - x1, y2 - y1],
                "idx": len(results),
            }
        )
    return results


def coco_poses(entries: Any, num_keypoints: int) -> list[Pose]:
    """The poses an answer in the coco format was written from (:func:`coco_results` read back), for a
    caller that runs the function remotely and tracks locally. Coordinates and scores come back as the
    function computed them (float32 values survive JSON); the box score, which the format does not
    carry, is solved from the pose score (:func:`alphapose.structures.box_score_of`). A ``ValueError``
    says what in the answer is not such a list.
    """
    from alphapose.structures import Pose, box_score_of

    if not isinstance(entries, list):
        raise ValueError(f"expected a list of results, got {type(entries).__name__}")
    poses = []
    for index, entry in enumerate(entries):
        try:
            values = np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3)
            x, y, w, h = (float(v) for v in entry["box"])
            score = float(entry["score"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"result {index} lacks keypoints, box or score of the coco format") from None
        if len(values) != num_keypoints:
            raise ValueError(f"result {index} has {len(values)} keypoints, the skeleton {num_keypoints}")
        keypoint_scores = values[:, 2].astype(np.float32)
        poses.append(
            Pose(
                box=np.array([x, y, x + w, y + h], dtype=np.float32),
                box_score=box_score_of(score, keypoint_scores),
                keypoints=values[:, :2].astype(np.float32),
                keypoint_scores=keypoint_scores,
                score=score,
            )
        )
    return poses


def _elements(pose: Pose, skeleton: Skeleton, thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """All keypoints of one person as CVAT ``points`` elements, in the skeleton's order.

    A keypoint with a non-finite coordinate or score (never produced by a healthy model, but JSON and
    CVAT cannot carry NaN) is sent outside, at the box centre, with confidence 0.
    """
    if len(pose.keypoints) != skeleton.num_keypoints:
        raise ValueError(
            f"a pose has {len(pose.keypoints)} keypoints, skeleton {skeleton.name} has "
            f"{skeleton.num_keypoints}"
        )
    x1, y1, x2, y2 = (float(v) for v in pose.box)
    centre = [(x1 + x2) / 2, (y1 + y2) / 2]
    elements = []
    for name, (x, y), score, keypoint_threshold in zip(
        skeleton.keypoints, pose.keypoints.tolist(), pose.keypoint_scores.tolist(), thresholds, strict=True
    ):
        finite = math.isfinite(x) and math.isfinite(y) and math.isfinite(score)
        elements.append(
            {
                "label": name,
                "type": "points",
                "points": [x, y] if finite else centre,
                "outside": not (finite and score >= keypoint_threshold),
                "confidence": score if finite else 0.0,
            }
        )
    return elements
