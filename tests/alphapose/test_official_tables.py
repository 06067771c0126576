"""Tables and constants pinned to the official definitions, written out here (never read from our modules).

Each expected value cites the file of the official AlphaPose repository (commit c60106d) it comes from,
so a wrong entry in our tables fails here even when every other test reuses the same table.
"""

from __future__ import annotations

import numpy as np
import torch

from alphapose.options import PipelineOptions
from alphapose.pose import nms as nms_module
from alphapose.pose.skeletons import COCO17, HALPE26
from alphapose.pose.transforms import CROP_SCALE, crop_persons, flip_heatmaps, normalize_crop

# COCO person_keypoints annotations (categories[0]["keypoints"]); AlphaPose's COCO models use this order.
COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# alphapose/datasets/mscoco.py, Mscoco.joint_pairs (lines 34-35)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# alphapose/datasets/halpe_26.py, Halpe_26.joint_pairs (lines 36-37)
HALPE_FLIP_PAIRS = (*COCO_FLIP_PAIRS, (20, 21), (22, 23), (24, 25))
# COCO person_keypoints annotations, categories[0]["skeleton"] (1-based there), 0-based here
COCO_EDGES = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
    (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
# alphapose/utils/vis.py, vis_frame, kp_num == 26 (lines 172-178)
HALPE_EDGES = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 18), (6, 18), (5, 7), (7, 9), (6, 8), (8, 10), (17, 18), (18, 19),
    (19, 11), (19, 12), (11, 13), (12, 14), (13, 15), (14, 16), (20, 24), (21, 25), (23, 25), (22, 24),
    (15, 24), (16, 25),
)  # fmt: skip
# Halpe-26 keypoints 17-25 (docs/MODEL_ZOO.md / the maintainers in issue #617; order of halpe_26.py)
HALPE_EXTRA_NAMES = (
    "head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe",
    "left_heel", "right_heel",
)  # fmt: skip


def test_coco_keypoint_order_and_flip_pairs() -> None:
    assert COCO17.keypoints == COCO_NAMES
    assert tuple(COCO17.flip_pairs) == COCO_FLIP_PAIRS
    # every pair is a left/right pair of the same body part
    for a, b in COCO_FLIP_PAIRS:
        assert COCO_NAMES[a].replace("left_", "") == COCO_NAMES[b].replace("right_", "")


def test_halpe_keypoint_order_and_flip_pairs() -> None:
    assert HALPE26.keypoints == COCO_NAMES + HALPE_EXTRA_NAMES
    assert tuple(HALPE26.flip_pairs) == HALPE_FLIP_PAIRS


def test_edges_are_the_official_ones() -> None:
    assert sorted(map(sorted, COCO17.edges)) == sorted(map(sorted, COCO_EDGES))
    assert len(COCO17.edges) == len(COCO_EDGES)
    assert sorted(map(sorted, HALPE26.edges)) == sorted(map(sorted, HALPE_EDGES))
    assert len(HALPE26.edges) == len(HALPE_EDGES)


def test_flip_heatmaps_uses_the_official_pairs() -> None:
    """Channel c of the flipped stack comes from its mirror partner, mirrored and shifted by one column."""
    for skeleton, pairs in ((COCO17, COCO_FLIP_PAIRS), (HALPE26, HALPE_FLIP_PAIRS)):
        k = skeleton.num_keypoints
        heatmaps = torch.arange(k * 2 * 5, dtype=torch.float32).reshape(1, k, 2, 5)
        partner = list(range(k))
        for a, b in pairs:
            partner[a], partner[b] = b, a
        flipped = flip_heatmaps(heatmaps, skeleton)
        for c in range(k):
            mirrored = heatmaps[0, partner[c]].flip(-1)
            torch.testing.assert_close(flipped[0, c, :, 1:], mirrored[:, :-1])
            torch.testing.assert_close(flipped[0, c, :, 0], mirrored[:, 0])  # column 0 keeps its value


def test_pixel_means_value_and_channel_order() -> None:
    """alphapose/utils/presets/simple_transform.py test_transform: img[0] -= 0.406, img[1] -= 0.457,
    img[2] -= 0.480 on the RGB crop (ImageNet's means in BGR order, applied to R, G, B), no std."""
    crop = np.zeros((2, 2, 3), dtype=np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 255, 51, 102  # R, G, B all different
    out = normalize_crop(crop)
    expected = np.array([1.0 - 0.406, 0.2 - 0.457, 0.4 - 0.480], dtype=np.float32)
    np.testing.assert_allclose(out[:, 0, 0], expected, atol=1e-7)
    # a crop whose maximum is 1 is not divided by 255 (im_to_torch: only when img.max() > 1)
    ones = np.ones((2, 2, 3), dtype=np.uint8)
    np.testing.assert_allclose(normalize_crop(ones)[:, 0, 0], 1 - np.array([0.406, 0.457, 0.480]), atol=1e-7)


def test_crop_box_geometry_is_the_official_one() -> None:
    """alphapose/utils/bbox.py _box_to_center_scale (aspect 0.75, scale_mult 1.25), _center_scale_to_box,
    worked through for box (100, 50)-(300, 400): scale (328.125, 437.5), crop box (35.9375, 6.25,
    364.0625, 443.75)."""
    assert CROP_SCALE == 1.25
    image = np.zeros((500, 500, 3), dtype=np.uint8)
    _, crop_boxes = crop_persons(image, np.array([[100, 50, 300, 400]], dtype=np.float32), (256, 192))
    np.testing.assert_array_equal(crop_boxes[0], np.array([35.9375, 6.25, 364.0625, 443.75], np.float32))


def test_pose_nms_constants_are_the_official_ones() -> None:
    """alphapose/utils/pPose_nms.py lines 13-19; the caps are literals in PCK_match (min(ref_dist, 7)) and
    p_merge_fast (min(ref_dist, 15)). tests/golden/data/pose_nms.json holds cases each of them decides."""
    body = nms_module.BODY_NMS
    assert (body.delta1, body.mu, body.delta2, body.gamma) == (1, 1.7, 2.65, 22.48)
    assert (body.score_threshold, body.match_threshold, body.alpha, body.whole_body) == (0.3, 5, 0.1, False)
    assert (nms_module.MATCH_RADIUS_CAP, nms_module.MERGE_RADIUS_CAP) == (7, 15)


def test_detector_defaults_are_the_official_ones() -> None:
    """detector/yolo_cfg.py: INP_DIM 608, NMS_THRES 0.6, CONFIDENCE 0.1."""
    options = PipelineOptions()
    assert (options.detector_input_size, options.detector_nms, options.detector_confidence) == (608, 0.6, 0.1)
