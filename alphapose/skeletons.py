"""Keypoint sets: names, left/right pairs, edges and a drawing layout.

One table serves the pose decoder (flip pairs), the CVAT label spec (names, edges, layout) and the
renderer (edges), so the function's answers and its advertised labels cannot drift apart.
"""

from __future__ import annotations

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

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (COCO17, HALPE26)}
