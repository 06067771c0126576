"""Answer formats on hand-made poses with known numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alphapose.cvat.formats import coco_results, cvat_skeletons
from alphapose.pose.skeletons import COCO17, HALPE26
from alphapose.structures import Pose


def make_pose(
    box_score: float, scores: list[float], box=(10.0, 20.0, 110.0, 220.0), offset: float = 0.0
) -> Pose:
    k = len(scores)
    keypoints = np.stack([np.arange(k) * 2.0 + offset, np.arange(k) * 3.0 + 0.5], axis=1).astype(np.float32)
    kp_scores = np.asarray(scores, dtype=np.float32)
    return Pose(
        box=np.asarray(box, dtype=np.float32),
        box_score=box_score,
        keypoints=keypoints,
        keypoint_scores=kp_scores,
        score=float(kp_scores.mean() + box_score + 1.25 * kp_scores.max()),
    )


SCORES17 = [0.9, 0.1, 0.5, 0.39, 0.4, 0.41, 0.8, 0.0, 1.0, 0.7, 0.2, 0.6, 0.3, 0.45, 0.35, 0.55, 0.65]


def test_cvat_skeleton_fields_order_and_types() -> None:
    pose = make_pose(0.75, SCORES17)
    (skeleton,) = cvat_skeletons([pose], COCO17, threshold=0.0, keypoint_threshold=0.4)
    assert skeleton["label"] == "person"
    assert skeleton["type"] == "skeleton"
    assert skeleton["attributes"] == []
    assert skeleton["confidence"] == pytest.approx(0.75)
    assert type(skeleton["confidence"]) is float
    elements = skeleton["elements"]
    assert [e["label"] for e in elements] == list(COCO17.keypoints)
    for i, element in enumerate(elements):
        assert element["type"] == "points"
        assert element["points"] == [i * 2.0, i * 3.0 + 0.5]
        assert all(type(v) is float for v in element["points"])
        assert element["outside"] is (SCORES17[i] < 0.4)
        assert element["confidence"] == pytest.approx(SCORES17[i])
        assert type(element["confidence"]) is float
    # 0.39 is under the threshold, 0.4 is not
    assert (elements[3]["outside"], elements[4]["outside"]) == (True, False)
    json.dumps([skeleton], allow_nan=False)


def test_keypoint_threshold_zero_and_one() -> None:
    pose = make_pose(0.75, SCORES17)
    (all_in,) = cvat_skeletons([pose], COCO17, threshold=0.0, keypoint_threshold=0.0)
    assert not any(e["outside"] for e in all_in["elements"])
    (only_best,) = cvat_skeletons([pose], COCO17, threshold=0.0, keypoint_threshold=1.0)
    assert [e["label"] for e in only_best["elements"] if not e["outside"]] == ["right_elbow"]


def test_threshold_compares_with_the_box_score() -> None:
    poses = [
        make_pose(0.3, SCORES17),
        make_pose(0.6, SCORES17, offset=1.0),
        make_pose(0.9, SCORES17, offset=2.0),
    ]
    kept = cvat_skeletons(poses, COCO17, threshold=0.6, keypoint_threshold=0.4)
    assert [s["confidence"] for s in kept] == pytest.approx([0.6, 0.9])  # >= keeps, order preserved
    assert kept[0]["elements"][0]["points"] == [1.0, 0.5]
    assert cvat_skeletons(poses, COCO17, threshold=0.95, keypoint_threshold=0.4) == []


def test_person_with_every_keypoint_outside_is_dropped() -> None:
    poses = [make_pose(0.9, [0.1] * 17), make_pose(0.9, [0.1] * 16 + [0.5])]
    (kept,) = cvat_skeletons(poses, COCO17, threshold=0.0, keypoint_threshold=0.4)
    assert [e["outside"] for e in kept["elements"]] == [True] * 16 + [False]


def test_non_finite_keypoint_is_sent_outside_at_the_box_centre() -> None:
    pose = make_pose(0.9, SCORES17)
    pose.keypoints[2] = [np.nan, 5.0]
    pose.keypoint_scores[5] = np.inf
    (skeleton,) = cvat_skeletons([pose], COCO17, threshold=0.0, keypoint_threshold=0.4)
    for index in (2, 5):
        element = skeleton["elements"][index]
        assert element == {
            "label": COCO17.keypoints[index],
            "type": "points",
            "points": [60.0, 120.0],
            "outside": True,
            "confidence": 0.0,
        }
    json.dumps(skeleton, allow_nan=False)


def test_halpe26_uses_its_26_names() -> None:
    pose = make_pose(0.8, [0.9] * 26)
    (skeleton,) = cvat_skeletons([pose], HALPE26, threshold=0.0, keypoint_threshold=0.4)
    assert [e["label"] for e in skeleton["elements"]] == list(HALPE26.keypoints)


def test_keypoint_count_must_match_the_skeleton() -> None:
    with pytest.raises(ValueError, match="17 keypoints"):
        cvat_skeletons([make_pose(0.8, SCORES17)], HALPE26, threshold=0.0, keypoint_threshold=0.4)


def test_coco_results_match_alphapose_results_json() -> None:
    first = make_pose(0.8, SCORES17)
    second = make_pose(0.2, SCORES17)
    third = make_pose(0.7, [0.5] * 17, box=(0.0, 0.0, 5.0, 8.0))
    results = coco_results([first, second, third], threshold=0.5, image_id="frame_000001.jpg")
    assert len(results) == 2
    entry = results[0]
    assert list(entry) == ["image_id", "category_id", "keypoints", "score", "box", "idx"]
    assert entry["image_id"] == "frame_000001.jpg"
    assert entry["category_id"] == 1
    assert len(entry["keypoints"]) == 3 * 17
    assert entry["keypoints"][:6] == pytest.approx([0.0, 0.5, 0.9, 2.0, 3.5, 0.1])
    assert all(type(v) is float for v in entry["keypoints"])
    assert entry["score"] == pytest.approx(np.mean(SCORES17) + 0.8 + 1.25 * 1.0)
    assert entry["box"] == [10.0, 20.0, 100.0, 200.0]
    assert [r["idx"] for r in results] == [0, 1]
    assert results[1]["box"] == [0.0, 0.0, 5.0, 8.0]
    json.dumps(results, allow_nan=False)


def test_coco_results_default_image_id_and_empty() -> None:
    assert coco_results([], threshold=0.0, image_id=0) == []
    (entry,) = coco_results([make_pose(0.8, SCORES17)], threshold=0.0, image_id=0)
    assert entry["image_id"] == 0
