"""Keypoint sets: names, left/right pairs, edges and a drawing layout.

One table serves the pose decoder (flip pairs), the CVAT label spec (names, edges, layout) and the
renderer (edges), so the function's answers and its advertised labels cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Skeleton:
    """A keypoint set in heatmap-channel order.

    ``edges`` and ``flip_pairs`` use 0-based keypoint indices; ``layout`` places each keypoint in CVAT's
    0-100 skeleton box (a person facing the viewer, so left_* keypoints are on the right).
    """

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int], ...]
    layout: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        k = len(self.keypoints)
        if len(self.layout) != k or len(set(self.keypoints)) != k:
            raise ValueError(f"skeleton {self.name}: layout and unique names must cover {k} keypoints")
        for a, b in (*self.flip_pairs, *self.edges):
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"skeleton {self.name}: index out of range in pair ({a}, {b})")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def flip_permutation(self) -> list[int]:
        """Channel order of a horizontally flipped heatmap stack (left and right swapped)."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


# fmt: off
_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

_COCO_FLIP = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# COCO's person_keypoints skeleton (19 edges), converted from its 1-based form.
_COCO_EDGES = tuple(
    (a - 1, b - 1)
    for a, b in (
        (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
        (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
    )
)

_COCO_LAYOUT = (
    (50.0, 10.0), (53.0, 7.5), (47.0, 7.5), (56.5, 9.5), (43.5, 9.5),
    (62.0, 24.0), (38.0, 24.0), (68.0, 39.0), (32.0, 39.0), (72.0, 53.0), (28.0, 53.0),
    (57.0, 55.0), (43.0, 55.0), (58.0, 72.0), (42.0, 72.0), (59.0, 88.0), (41.0, 88.0),
)

COCO17 = Skeleton(
    name="coco17",
    keypoints=_COCO_NAMES,
    flip_pairs=_COCO_FLIP,
    edges=_COCO_EDGES,
    layout=_COCO_LAYOUT,
)

HALPE26 = Skeleton(
    name="halpe26",
    keypoints=(
        *_COCO_NAMES,
        "head", "neck", "hip", "left_big_toe", "right_big_toe",
        "left_small_toe", "right_small_toe", "left_heel", "right_heel",
    ),
    flip_pairs=(*_COCO_FLIP, (20, 21), (22, 23), (24, 25)),
    # The edges AlphaPose draws for its 26-keypoint set: head, body through neck and mid-hip, feet.
    edges=(
        (0, 1), (0, 2), (1, 3), (2, 4),
        (5, 18), (6, 18), (5, 7), (7, 9), (6, 8), (8, 10), (17, 18), (18, 19), (19, 11), (19, 12),
        (11, 13), (12, 14), (13, 15), (14, 16),
        (20, 24), (21, 25), (23, 25), (22, 24), (15, 24), (16, 25),
    ),
    layout=(
        *_COCO_LAYOUT,
        (50.0, 2.0), (50.0, 20.0), (50.0, 55.0), (63.0, 97.0), (37.0, 97.0),
        (66.0, 95.0), (34.0, 95.0), (57.0, 94.0), (43.0, 94.0),
    ),
)

# fmt: on

# Whole-body sets. Index ranges, flip pairs and edges follow AlphaPose's dataset definitions
# (alphapose/datasets/halpe_136.py, coco_wholebody.py, halpe_68_noface.py) and the edges its
# alphapose/utils/vis.py draws. Face points are the 68-landmark (iBUG 300-W) markup, named face_1 ..
# face_68 in its 1-based numbering (face_1..face_17 the jaw line from the person's right ear). A hand
# is its root followed by four joints per finger, thumb to pinky, from the palm to the tip.

_FINGERS = ("thumb", "index", "middle", "ring", "pinky")


def _hand_names(side: str) -> tuple[str, ...]:
    return (f"{side}_hand_root", *(f"{side}_hand_{finger}_{j}" for finger in _FINGERS for j in range(1, 5)))


_FACE_NAMES = tuple(f"face_{i}" for i in range(1, 69))
_HANDS_NAMES = (*_hand_names("left"), *_hand_names("right"))


def _shift(pairs: tuple[tuple[int, int], ...], offset: int) -> tuple[tuple[int, int], ...]:
    return tuple((a + offset, b + offset) for a, b in pairs)


# Within one 68-point face: left/right pairs (jaw, brows, eyes, nostrils, mouth) and the lines AlphaPose
# draws (one polyline per part, not closed).
# fmt: off
_FACE_FLIP = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46), (31, 35), (32, 34),
    (48, 54), (49, 53), (50, 52), (61, 63), (67, 65), (60, 64), (59, 55), (58, 56),
)
_FACE_EDGES = tuple(
    (i, i + 1)
    for first, last in ((0, 16), (17, 21), (22, 26), (27, 30), (31, 35), (36, 41), (42, 47), (48, 67))
    for i in range(first, last)
)
# Within one 21-point hand: root to each finger's first joint, then along the finger.
_HAND_EDGES = tuple(
    edge
    for base in (1, 5, 9, 13, 17)
    for edge in ((0, base), (base, base + 1), (base + 1, base + 2), (base + 2, base + 3))
)
_HANDS_FLIP = tuple((i, i + 21) for i in range(21))
# fmt: on


def _face_layout(cx: float, cy: float, size: float) -> tuple[tuple[float, float], ...]:
    """A frontal 68-landmark face in a ``size`` x ``size`` square centred on (cx, cy); the face is drawn
    large, apart from the body, so that its points stay distinct in CVAT's editor."""
    u = size / 24.0  # the shape below is drawn on a 24-unit grid
    points: list[tuple[float, float]] = []
    for i in range(17):  # jaw: from the person's right ear round the chin to the left ear
        t = math.pi * (1 - i / 16)
        points.append((cx + 11 * u * math.cos(t), cy - 2 * u + 13 * u * math.sin(t)))
    for side in (-1, 1):  # brows, the person's right one first (the viewer's left)
        for j in range(5):  # from the outer end for the right brow, from the inner end for the left
            x = 2 + 1.8 * j if side > 0 else -(2 + 1.8 * (4 - j))
            points.append((cx + x * u, cy - 7 * u - 1.2 * u * math.sin(math.pi * (j + 0.5) / 5)))
    for j in range(4):  # nose bridge, top to tip
        points.append((cx, cy - 5.5 * u + 2 * u * j))
    for j in range(5):  # nostrils, right to left
        points.append((cx + (j - 2) * 1.6 * u, cy + 1.6 * u + 0.6 * u * (1 - abs(j - 2) / 2)))
    for centre in (-4.5, 4.5):  # eyes: outer corner first for the right one, inner first for the left
        for j in range(6):
            t = math.pi * (1 - j / 3)
            points.append((cx + centre * u + 2.6 * u * math.cos(t), cy - 3 * u - 1.4 * u * math.sin(t)))
    for j in range(12):  # outer lip, from the right mouth corner over the upper lip
        t = math.pi * (1 - j / 6)
        points.append((cx + 5.6 * u * math.cos(t), cy + 6.5 * u - 2.4 * u * math.sin(t)))
    for j in range(8):  # inner lip
        t = math.pi * (1 - j / 4)
        points.append((cx + 3.4 * u * math.cos(t), cy + 6.5 * u - 1.2 * u * math.sin(t)))
    return tuple((round(x, 2), round(y, 2)) for x, y in points)


def _hand_layout(root: tuple[float, float], side: int) -> tuple[tuple[float, float], ...]:
    """A hand hanging down, palm to the viewer, thumb outwards; ``side`` -1 on the viewer's left (the
    person's right hand), +1 on the viewer's right."""
    angles = (150, 125, 105, 85, 65)  # thumb to pinky, degrees from the viewer's right, y downwards
    points = [root]
    for finger, angle in enumerate(angles):
        a = math.radians(angle if side < 0 else 180 - angle)
        start, step = (4.0, 2.2) if finger == 0 else (5.5, 2.4)
        for j in range(4):
            r = start + step * j
            points.append((root[0] + r * math.cos(a), root[1] + r * math.sin(a)))
    return tuple((round(x, 2), round(y, 2)) for x, y in points)


_FACE_LAYOUT = _face_layout(15.0, 14.0, 26.0)
_HANDS_LAYOUT = (*_hand_layout((80.0, 58.0), side=1), *_hand_layout((20.0, 58.0), side=-1))

HALPE136 = Skeleton(
    name="halpe136",
    keypoints=(*HALPE26.keypoints, *_FACE_NAMES, *_HANDS_NAMES),
    flip_pairs=(*HALPE26.flip_pairs, *_shift(_FACE_FLIP, 26), *_shift(_HANDS_FLIP, 94)),
    edges=(
        *HALPE26.edges,
        *_shift(_FACE_EDGES, 26),
        *_shift(_HAND_EDGES, 94),
        *_shift(_HAND_EDGES, 115),
    ),
    layout=(*HALPE26.layout, *_FACE_LAYOUT, *_HANDS_LAYOUT),
)

# COCO-WholeBody: COCO's 17, six foot points (left big toe, small toe, heel, then the right ones), the
# face, then the hands. AlphaPose's vis.py draws no torso for this set; the body keeps COCO's edges.
COCO_WHOLEBODY133 = Skeleton(
    name="coco_wholebody133",
    keypoints=(
        *_COCO_NAMES,
        "left_big_toe",
        "left_small_toe",
        "left_heel",
        "right_big_toe",
        "right_small_toe",
        "right_heel",
        *_FACE_NAMES,
        *_HANDS_NAMES,
    ),
    flip_pairs=(*_COCO_FLIP, (17, 20), (18, 21), (19, 22), *_shift(_FACE_FLIP, 23), *_shift(_HANDS_FLIP, 91)),
    edges=(
        *_COCO_EDGES,
        (18, 19),
        (21, 22),
        (20, 22),
        (17, 19),
        (15, 19),
        (16, 22),
        *_shift(_FACE_EDGES, 23),
        *_shift(_HAND_EDGES, 91),
        *_shift(_HAND_EDGES, 112),
    ),
    layout=(
        *_COCO_LAYOUT,
        (63.0, 97.0),
        (66.0, 95.0),
        (57.0, 94.0),
        (37.0, 97.0),
        (34.0, 95.0),
        (43.0, 94.0),
        *_FACE_LAYOUT,
        *_HANDS_LAYOUT,
    ),
)

# Halpe without the face: the 26 body and foot points, then the two hands.
HALPE68 = Skeleton(
    name="halpe68",
    keypoints=(*HALPE26.keypoints, *_HANDS_NAMES),
    flip_pairs=(*HALPE26.flip_pairs, *_shift(_HANDS_FLIP, 26)),
    edges=(*HALPE26.edges, *_shift(_HAND_EDGES, 26), *_shift(_HAND_EDGES, 47)),
    layout=(*HALPE26.layout, *_HANDS_LAYOUT),
)

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (COCO17, HALPE26, HALPE136, COCO_WHOLEBODY133, HALPE68)}

# OKS sigmas per keypoint (the spread of human labelling, relative to the object's size), in each set's
# order, as AlphaPose's oks_iou chooses them by keypoint count (alphapose/utils/pPose_nms.py): COCO's 17,
# Halpe's body and feet (which write them x10), 0.025 for every Halpe face and hand point, and
# COCO-WholeBody's own table. AlphaPose gives none for the 68-point set: it has no entry here.
# fmt: off
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
    0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)
_HALPE26_SIGMAS = (*_COCO_SIGMAS, 0.08, 0.08, 0.08, 0.089, 0.089, 0.089, 0.089, 0.089, 0.089)
_WHOLEBODY_FEET_SIGMAS = (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)
_WHOLEBODY_FACE_SIGMAS = (
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038,
    0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009,
    0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007,
    0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008,
    0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.010, 0.008,
)
_WHOLEBODY_HAND_SIGMAS = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017,
    0.021, 0.021, 0.032, 0.020, 0.019, 0.022, 0.031,
)
# fmt: on

OKS_SIGMAS: dict[str, tuple[float, ...]] = {
    COCO17.name: _COCO_SIGMAS,
    HALPE26.name: _HALPE26_SIGMAS,
    HALPE136.name: (*_HALPE26_SIGMAS, *(0.025,) * (HALPE136.num_keypoints - HALPE26.num_keypoints)),
    COCO_WHOLEBODY133.name: (
        *_COCO_SIGMAS,
        *_WHOLEBODY_FEET_SIGMAS,
        *_WHOLEBODY_FACE_SIGMAS,
        *_WHOLEBODY_HAND_SIGMAS,
        *_WHOLEBODY_HAND_SIGMAS,
    ),
}


def oks_sigmas(skeleton: Skeleton) -> tuple[float, ...] | None:
    """The OKS sigmas of a keypoint set, or None where AlphaPose defines none (the 68-point set)."""
    return OKS_SIGMAS.get(skeleton.name)
