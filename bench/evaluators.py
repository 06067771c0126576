"""pycocotools against faster-coco-eval on the same results: ``python -m bench.evaluators [--images N]``.

A synthetic keypoint set the size of COCO val2017 by default (5000 images, 0 to 5 labelled persons each,
some crowds and partly labelled persons) and results made from it as a pose model's would be (every
keypoint moved by a random few pixels, missed persons, false poses), scored by both evaluators through
:func:`alphapose.evaluation.evaluate`. Prints whether the figures are identical and each one's time
(the median of ``--runs``, the two in turns).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from alphapose.evaluation import EVALUATORS, evaluate, load_ground_truth
from alphapose.pose.skeletons import COCO17
from bench.measure import cpu_model


def synthetic_set(images: int, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO person_keypoints dictionary and results for it."""
    rng = np.random.default_rng(seed)
    image_entries, annotations, results = [], [], []
    for image_id in range(1, images + 1):
        name = f"{image_id:012d}.jpg"
        image_entries.append({"id": image_id, "file_name": name, "width": 640, "height": 480})
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(20, 300), rng.uniform(40, 420)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            xy = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17)], axis=1)
            visible = rng.choice([0, 1, 2], 17, p=[0.3, 0.1, 0.6])
            keypoints = np.concatenate([xy * (visible[:, None] > 0), visible[:, None]], axis=1)
            crowd = int(rng.random() < 0.02)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": keypoints.reshape(-1).tolist(),
                    "num_keypoints": int((visible > 0).sum()),
                    "bbox": [x, y, w, h],
                    "area": w * h * 0.6,
                    "iscrowd": crowd,
                }
            )
            if rng.random() < 0.1:  # missed
                continue
            moved = xy + rng.normal(0, rng.uniform(1, 15), (17, 2))
            results.append(_result(image_id, moved, rng))
        for _ in range(rng.integers(0, 3)):  # false poses
            results.append(_result(image_id, rng.uniform(0, 480, (17, 2)), rng))
    dataset = {
        "images": image_entries,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}],
    }
    return dataset, results


def _result(image_id: int, xy: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    scores = rng.uniform(0.05, 1.0, (17, 1))
    return {
        "image_id": image_id,
        "category_id": 1,
        "keypoints": np.concatenate([xy, scores], axis=1).reshape(-1).tolist(),
        "score": float(rng.uniform(0.5, 3.0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluators", description=__doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    dataset, results = synthetic_set(args.images)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "person_keypoints.json"
        path.write_text(json.dumps(dataset))
        truth = load_ground_truth(path)
    times: dict[str, list[float]] = {name: [] for name in EVALUATORS}
    reports = {}
    for _ in range(args.runs):
        for name in EVALUATORS:
            start = time.perf_counter()
            reports[name] = evaluate(truth, results, evaluator=name)["all"]
            times[name].append(time.perf_counter() - start)
    first, second = (reports[name] for name in EVALUATORS)
    largest = max(abs(first[stat] - second[stat]) for stat in first)
    print(f"{args.images} images, {len(dataset['annotations'])} persons, {len(results)} results")
    print(f"identical figures: {first == second} (largest difference {largest:.2e}); AP {first['AP']:.4f}")
    for name in EVALUATORS:
        print(f"{name}: {statistics.median(times[name]):.2f} s (median of {args.runs})")
    print(f"cpu: {cpu_model()}, load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
