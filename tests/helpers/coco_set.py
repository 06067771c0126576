"""A small COCO person-keypoints set written for a test: the suite's photo and its mirror image with
hand-made annotations, and the ``python -m tools evaluate`` command line that scores a run on it (the
evaluation tests and the int8 comparison use it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
from repo_paths import TEST_DATA

from alphapose.pose.skeletons import COCO17

PHOTO = TEST_DATA / "astronaut.jpg"
WIDTH = HEIGHT = 512
AREA = 150_000.0  # the person's segmented area in the hand-made annotation: the OKS scale s^2
# Hand-placed on the photo (x, y, v): face, shoulders, elbows and the right wrist are visible; the left
# wrist is behind the helmet (labelled, v=1); hips, knees and ankles are outside the picture (v=0).
ASTRONAUT = (
    (222, 118, 2), (243, 100, 2), (203, 100, 2), (272, 110, 2), (176, 110, 2), (320, 260, 2),
    (95, 265, 2), (355, 430, 2), (55, 420, 2), (330, 470, 1), (165, 490, 2),
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0),
)  # fmt: skip
BOX = [20.0, 15.0, 460.0, 482.0]


def mirrored(keypoints: tuple[tuple[int, int, int], ...]) -> list[tuple[float, float, int]]:
    """The keypoints of the mirror image: x -> W - 1 - x, left and right exchanged."""
    out = [(WIDTH - 1 - x, y, v) if v else (0, 0, 0) for x, y, v in keypoints]
    for a, b in COCO17.flip_pairs:
        out[a], out[b] = out[b], out[a]
    return out


def flat(keypoints: Any) -> list[float]:
    return [float(value) for point in keypoints for value in point]


def write_set(directory: Path, *, mirror: bool = True, **changes: Any) -> Path:
    """A COCO person_keypoints file and its images: the photo (id 1) and its mirror image (id 2); a
    second category without keypoints and one annotation of it, as instance files hold."""
    directory.mkdir(parents=True, exist_ok=True)
    images_dir = directory / "images"
    images_dir.mkdir(exist_ok=True)
    photo = cv2.imread(str(PHOTO))
    cv2.imwrite(str(images_dir / "000000000001.png"), photo)
    images = [{"id": 1, "file_name": "000000000001.png", "width": WIDTH, "height": HEIGHT}]
    people = [flat(ASTRONAUT)]
    if mirror:
        cv2.imwrite(str(images_dir / "000000000002.png"), photo[:, ::-1])
        images.append({"id": 2, "file_name": "000000000002.png", "width": WIDTH, "height": HEIGHT})
        people.append(flat(mirrored(ASTRONAUT)))
    annotations = [
        {
            "id": 10 + n,
            "image_id": n + 1,
            "category_id": 1,
            "keypoints": keypoints,
            "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
            "bbox": BOX if n == 0 else [WIDTH - 1 - BOX[0] - BOX[2], *BOX[1:]],
            "area": AREA,
            "iscrowd": 0,
        }
        for n, keypoints in enumerate(people)
    ]
    annotations.append({"id": 99, "image_id": 1, "category_id": 2, "bbox": [0, 0, 90, 300], "area": 27000.0})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": 1, "name": "person", "keypoints": list(COCO17.keypoints), "skeleton": []},
            {"id": 2, "name": "flag"},
        ],
        **changes,
    }
    path = directory / "person_keypoints.json"
    path.write_text(json.dumps(data))
    return path


def evaluate_argv(annotations: Path, images: Path, out: Path) -> list[str]:
    """``python -m tools evaluate`` on a set ``write_set`` made."""
    return ["evaluate", "--annotations", str(annotations), "--images", str(images), "--out", str(out)]
