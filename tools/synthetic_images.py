"""Photo-like synthetic images and person boxes, for the tests and the benchmarks (bench/)."""

from __future__ import annotations

import cv2
import numpy as np


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image with a photo's statistics (smooth regions, edges and grain), so its JPEG has
    a realistic size and decode time; white noise would compress unrealistically badly."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    grain = rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def person_boxes(width: int, height: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` upright person-shaped boxes (N, 4) xyxy inside the image and detector-like scores (N,).

    Heights shrink as the count grows (a crowd is seen from further away); boxes may overlap, as
    detections of a group do.
    """
    rng = np.random.default_rng(seed)
    tallest = 0.8 if count <= 5 else 0.45
    h = rng.uniform(0.3, 1.0, count) * tallest * height
    w = np.minimum(h * rng.uniform(0.35, 0.55, count), width - 1)
    x = rng.uniform(0, width - w)
    y = rng.uniform(0, height - h)
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
    scores = rng.uniform(0.5, 0.99, count).astype(np.float32)
    return boxes, scores
