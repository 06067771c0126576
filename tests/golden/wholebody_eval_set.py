"""A small synthetic COCO-WholeBody set and poses for it, the same under any Python and numpy (it uses
``random`` only): the input of the xtcocotools recording (gen_xtcocotools.py) and of its test."""

from __future__ import annotations

import random
from typing import Any

# COCO-WholeBody's annotation fields in the order of its 133 keypoints, with their lengths.
FIELDS = (
    ("keypoints", 17),
    ("foot_kpts", 6),
    ("face_kpts", 68),
    ("lefthand_kpts", 21),
    ("righthand_kpts", 21),
)
UNLABELLED = {
    "keypoints": 0.05,
    "foot_kpts": 0.4,
    "face_kpts": 0.3,
    "lefthand_kpts": 0.4,
    "righthand_kpts": 0.4,
}
NOISE = {"keypoints": 8.0, "foot_kpts": 6.0, "face_kpts": 2.0, "lefthand_kpts": 3.0, "righthand_kpts": 3.0}


def make_set(seed: int = 23, images: int = 30) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The annotation dictionary and the poses, each pose with its keypoints per field (xtcocotools'
    form); :func:`flat` gives one pose's 133 keypoints in order (AlphaPose's form)."""
    rng = random.Random(seed)
    image_entries, annotations, poses = [], [], []
    for image_id in range(1, images + 1):
        image_entries.append(
            {"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 640, "height": 480}
        )
        for _ in range(rng.randint(0, 3)):
            w, h = rng.uniform(30, 300), rng.uniform(60, 420)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            person: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "area": round(w * h * 0.6, 2),
                "iscrowd": int(rng.random() < 0.05),
            }
            truth = {}
            for field, count in FIELDS:
                labelled = rng.random() >= UNLABELLED[field]
                points = []
                for _ in range(count):
                    if labelled and rng.random() < 0.8:
                        points.append((round(rng.uniform(x, x + w), 2), round(rng.uniform(y, y + h), 2), 2))
                    else:
                        points.append((0.0, 0.0, 0))
                truth[field] = points
                person[field] = [v for point in points for v in point]
            person["num_keypoints"] = sum(1 for _, _, v in truth["keypoints"] if v)
            annotations.append(person)
            if rng.random() < 0.1:  # missed
                continue
            pose: dict[str, Any] = {
                "image_id": image_id,
                "category_id": 1,
                "score": round(rng.uniform(0.5, 3), 4),
            }
            silent = rng.random() < 0.15  # a pose whose hand keypoints all score 0
            for field, _ in FIELDS:
                values = []
                for px, py, v in truth[field]:
                    if not v:
                        px, py = rng.uniform(x, x + w), rng.uniform(y, y + h)
                    score = 0.0 if silent and "hand" in field else round(rng.uniform(0.05, 1), 4)
                    values += [
                        round(px + rng.gauss(0, NOISE[field]), 2),
                        round(py + rng.gauss(0, NOISE[field]), 2),
                        score,
                    ]
                pose[field] = values
            poses.append(pose)
        for _ in range(rng.randint(0, 1)):  # a false pose
            pose = {"image_id": image_id, "category_id": 1, "score": round(rng.uniform(0.5, 3), 4)}
            for field, count in FIELDS:
                pose[field] = [
                    v
                    for _ in range(count)
                    for v in (
                        round(rng.uniform(0, 640), 2),
                        round(rng.uniform(0, 480), 2),
                        round(rng.random(), 4),
                    )
                ]
            poses.append(pose)
    categories = [{"id": 1, "name": "person", "keypoints": [f"body_{i}" for i in range(17)]}]
    return {"images": image_entries, "annotations": annotations, "categories": categories}, poses


def flat(pose: dict[str, Any]) -> dict[str, Any]:
    """One pose with its 133 keypoints in one ``keypoints`` list, as AlphaPose writes them."""
    keypoints = [v for field, _ in FIELDS for v in pose[field]]
    return {"image_id": pose["image_id"], "category_id": 1, "keypoints": keypoints, "score": pose["score"]}
