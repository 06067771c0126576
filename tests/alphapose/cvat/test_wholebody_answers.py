"""The whole-body keypoint sets and their CVAT side: tables pinned to AlphaPose's definitions, a label
spec CVAT's label constructor can build, and per-keypoint display thresholds in the answers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from alphapose.cvat.formats import cvat_skeletons
from alphapose.cvat.settings import Config
from alphapose.cvat.spec import label_spec
from alphapose.pose.presets import PRESETS, get_preset
from alphapose.pose.skeletons import COCO_WHOLEBODY133, HALPE68, HALPE136, SKELETONS, Skeleton
from alphapose.structures import Pose

# Flip pairs as written in AlphaPose c60106d, alphapose/datasets/halpe_136.py (also
# halpe_coco_wholebody_136.py), coco_wholebody.py and halpe_68_noface.py (``joint_pairs``).
# fmt: off
OFFICIAL_FLIP_PAIRS = {
    "halpe136": [
        [1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16],
        [20, 21], [22, 23], [24, 25], [26, 42], [27, 41], [28, 40], [29, 39], [30, 38],
        [31, 37], [32, 36], [33, 35], [43, 52], [44, 51], [45, 50], [46, 49], [47, 48],
        [62, 71], [63, 70], [64, 69], [65, 68], [66, 73], [67, 72], [57, 61], [58, 60],
        [74, 80], [75, 79], [76, 78], [87, 89], [93, 91], [86, 90], [85, 81], [84, 82],
        [94, 115], [95, 116], [96, 117], [97, 118], [98, 119], [99, 120], [100, 121],
        [101, 122], [102, 123], [103, 124], [104, 125], [105, 126], [106, 127], [107, 128],
        [108, 129], [109, 130], [110, 131], [111, 132], [112, 133], [113, 134], [114, 135],
    ],
    "coco_wholebody133": [
        [1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16],
        [17, 20], [18, 21], [19, 22], [23, 39], [24, 38], [25, 37], [26, 36],
        [27, 35], [28, 34], [29, 33], [30, 32], [40, 49], [41, 48], [42, 47],
        [43, 46], [44, 45], [59, 68], [60, 67], [61, 66], [62, 65], [63, 70],
        [64, 69], [54, 58], [55, 57], [71, 77], [72, 76], [73, 75], [84, 86],
        [90, 88], [83, 87], [82, 78], [81, 79], [91, 112], [92, 113], [93, 114],
        [94, 115], [95, 116], [96, 117], [97, 118], [98, 119], [99, 120],
        [100, 121], [101, 122], [102, 123], [103, 124], [104, 125], [105, 126],
        [106, 127], [107, 128], [108, 129], [109, 130], [110, 131], [111, 132],
    ],
    "halpe68": [
        [1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16],
        [20, 21], [22, 23], [24, 25], [26, 47], [27, 48], [28, 49], [29, 50], [30, 51],
        [31, 52], [32, 53], [33, 54], [34, 55], [35, 56], [36, 57], [37, 58], [38, 59],
        [39, 60], [40, 61], [41, 62], [42, 63], [43, 64], [44, 65], [45, 66], [46, 67],
    ],
}
# Edges AlphaPose draws for 136 keypoints, alphapose/utils/vis.py (``l_pair`` of ``kp_num == 136``).
OFFICIAL_EDGES_136 = [
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 18), (6, 18), (5, 7), (7, 9), (6, 8), (8, 10), (17, 18),
    (18, 19), (19, 11), (19, 12), (11, 13), (12, 14), (13, 15), (14, 16), (20, 24), (21, 25), (23, 25),
    (22, 24), (15, 24), (16, 25), (26, 27), (27, 28), (28, 29), (29, 30), (30, 31), (31, 32), (32, 33),
    (33, 34), (34, 35), (35, 36), (36, 37), (37, 38), (38, 39), (39, 40), (40, 41), (41, 42), (43, 44),
    (44, 45), (45, 46), (46, 47), (48, 49), (49, 50), (50, 51), (51, 52), (53, 54), (54, 55), (55, 56),
    (57, 58), (58, 59), (59, 60), (60, 61), (62, 63), (63, 64), (64, 65), (65, 66), (66, 67), (68, 69),
    (69, 70), (70, 71), (71, 72), (72, 73), (74, 75), (75, 76), (76, 77), (77, 78), (78, 79), (79, 80),
    (80, 81), (81, 82), (82, 83), (83, 84), (84, 85), (85, 86), (86, 87), (87, 88), (88, 89), (89, 90),
    (90, 91), (91, 92), (92, 93), (94, 95), (95, 96), (96, 97), (97, 98), (94, 99), (99, 100),
    (100, 101), (101, 102), (94, 103), (103, 104), (104, 105), (105, 106), (94, 107), (107, 108),
    (108, 109), (109, 110), (94, 111), (111, 112), (112, 113), (113, 114), (115, 116), (116, 117),
    (117, 118), (118, 119), (115, 120), (120, 121), (121, 122), (122, 123), (115, 124), (124, 125),
    (125, 126), (126, 127), (115, 128), (128, 129), (129, 130), (130, 131), (115, 132), (132, 133),
    (133, 134), (134, 135),
]
# The same file's 68-keypoint hands (``kp_num == 68``), after the Halpe-26 body edges.
OFFICIAL_HAND_EDGES_68 = [
    (26, 27), (27, 28), (28, 29), (29, 30), (26, 31), (31, 32), (32, 33), (33, 34),
    (26, 35), (35, 36), (36, 37), (37, 38), (26, 39), (39, 40), (40, 41), (41, 42),
    (26, 43), (43, 44), (44, 45), (45, 46), (47, 48), (48, 49), (49, 50), (50, 51),
    (47, 52), (52, 53), (53, 54), (54, 55), (47, 56), (56, 57), (57, 58), (58, 59),
    (47, 60), (60, 61), (61, 62), (62, 63), (47, 64), (64, 65), (65, 66), (66, 67),
]
# fmt: on
WHOLE_BODY = (HALPE136, COCO_WHOLEBODY133, HALPE68)


@pytest.mark.parametrize("skeleton", WHOLE_BODY, ids=lambda s: s.name)
def test_flip_pairs_are_the_official_ones(skeleton: Skeleton) -> None:
    official = {frozenset(pair) for pair in OFFICIAL_FLIP_PAIRS[skeleton.name]}
    assert {frozenset(pair) for pair in skeleton.flip_pairs} == official
    assert len(skeleton.flip_pairs) == len(official)


def test_edges_are_the_ones_alphapose_draws() -> None:
    assert set(HALPE136.edges) == set(OFFICIAL_EDGES_136) and len(HALPE136.edges) == len(OFFICIAL_EDGES_136)
    halpe26_edges = OFFICIAL_EDGES_136[:24]
    assert set(HALPE68.edges) == set(halpe26_edges + OFFICIAL_HAND_EDGES_68)


def test_names_say_part_and_side() -> None:
    names = HALPE136.keypoints
    assert names[:26] == SKELETONS["halpe26"].keypoints
    assert names[26:94] == tuple(f"face_{i}" for i in range(1, 69))
    assert names[94] == "left_hand_root" and names[115] == "right_hand_root"
    assert names[94 + 2] == "left_hand_thumb_2" and names[135] == "right_hand_pinky_4"
    assert COCO_WHOLEBODY133.keypoints[17:23] == (
        "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"
    )  # fmt: skip
    assert COCO_WHOLEBODY133.keypoints[23:] == names[26:]
    assert HALPE68.keypoints == names[:26] + names[94:]
    for skeleton in WHOLE_BODY:  # flipping swaps left and right names, and only those
        for a, b in skeleton.flip_pairs:
            left, right = sorted((skeleton.keypoints[a], skeleton.keypoints[b]))
            if left.startswith("left"):
                assert right == "right" + left.removeprefix("left")


@pytest.mark.parametrize("skeleton", WHOLE_BODY, ids=lambda s: s.name)
def test_layout_keeps_points_apart_inside_cvats_box(skeleton: Skeleton) -> None:
    points = np.array(skeleton.layout)
    assert points.min() >= 0 and points.max() <= 100
    gaps = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)) + np.eye(len(points)) * 100
    assert gaps.min() >= 1.2  # circles of radius 0.75 barely touch at worst
    # left points on the viewer's right, as for the body
    for a, b in skeleton.flip_pairs:
        left, right = (a, b) if skeleton.keypoints[a].startswith("left") else (b, a)
        if skeleton.keypoints[left].startswith("left_hand"):
            assert points[left, 0] > 50 > points[right, 0]


@pytest.mark.parametrize("skeleton", WHOLE_BODY, ids=lambda s: s.name)
def test_cvat_builds_the_skeleton_from_the_spec(skeleton: Skeleton) -> None:
    """What CVAT does with the spec: "From model" copies the sublabels (by name) and the SVG; saving the
    label creates the sublabels with new ids and rewrites each ``data-label-name="NAME"`` of the SVG to
    ``data-label-id="ID"`` (cvat/apps/engine/serializers.py); the canvas needs integer edge node ids
    that exist among the circles' ``data-node-id``."""
    (label,) = json.loads(json.dumps(label_spec(skeleton)))
    assert label["type"] == "skeleton"
    sublabels = label["sublabels"]
    assert [s["id"] for s in sublabels] == list(range(1, skeleton.num_keypoints + 1))
    assert len({s["name"] for s in sublabels}) == skeleton.num_keypoints
    assert all(re.fullmatch(r"[a-z0-9_]+", s["name"]) for s in sublabels)

    svg = label["svg"]
    for new_id, sublabel in enumerate(sublabels, start=1001):
        svg = svg.replace(f'data-label-name="{sublabel["name"]}"', f'data-label-id="{new_id}"')
    assert "data-label-name" not in svg
    circles = re.findall(r'<circle [^>]*data-node-id="(\d+)"[^>]*data-label-id="(\d+)"', svg)
    assert sorted(int(label_id) for _, label_id in circles) == list(
        range(1001, 1001 + skeleton.num_keypoints)
    )
    node_ids = {int(node) for node, _ in circles}
    edges = re.findall(r'data-node-from="([^"]+)" data-node-to="([^"]+)"', svg)
    assert len(edges) == len(skeleton.edges)
    assert all(int(a) in node_ids and int(b) in node_ids for a, b in edges)


def whole_body_pose(body_score: float, face_hand_score: float) -> Pose:
    scores = np.array([body_score] * 26 + [face_hand_score] * 110, dtype=np.float32)
    return Pose(
        box=np.array([0, 0, 100, 200], np.float32),
        box_score=0.9,
        keypoints=np.tile(np.array([[50.0, 60.0]], np.float32), (136, 1)),
        keypoint_scores=scores,
        score=1.0,
    )


def test_combined_model_hands_are_shown_by_their_own_threshold() -> None:
    thresholds = get_preset("fastpose_dcn_res50_wholebody136").keypoint_thresholds
    (person,) = cvat_skeletons(
        [whole_body_pose(0.5, 0.1)], HALPE136, threshold=0, keypoint_threshold=thresholds
    )
    assert [e["outside"] for e in person["elements"]] == [False] * 136  # 0.5 >= 0.4, 0.1 >= 0.05
    (person,) = cvat_skeletons(
        [whole_body_pose(0.3, 0.1)], HALPE136, threshold=0, keypoint_threshold=thresholds
    )
    assert [e["outside"] for e in person["elements"]] == [True] * 26 + [False] * 110
    # one value (a request's keypoint_threshold) applies to every keypoint
    (person,) = cvat_skeletons([whole_body_pose(0.5, 0.1)], HALPE136, threshold=0, keypoint_threshold=0.4)
    assert [e["outside"] for e in person["elements"]] == [False] * 26 + [True] * 110
    assert (
        cvat_skeletons([whole_body_pose(0.3, 0.04)], HALPE136, threshold=0, keypoint_threshold=thresholds)
        == []
    )
    with pytest.raises(ValueError, match="26 keypoint thresholds for skeleton halpe136"):
        cvat_skeletons([whole_body_pose(0.3, 0.1)], HALPE136, threshold=0, keypoint_threshold=(0.4,) * 26)


def test_the_function_uses_the_presets_thresholds_unless_a_value_is_given() -> None:
    preset = get_preset("fastpose_dcn_res50_wholebody136")
    unset, function_wide = Config(), Config(keypoint_threshold=0.2)
    assert unset.keypoint_thresholds(preset) == (0.4,) * 26 + (0.05,) * 110
    assert function_wide.keypoint_thresholds(preset) == 0.2
    for preset in PRESETS.values():
        if preset.regression_joints == 0:
            assert set(preset.keypoint_thresholds) == {0.4}  # unchanged for every heatmap model
