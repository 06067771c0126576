"""Inputs of the benchmark: images as CVAT sends them and a fixed number of person boxes.

The weights are random, so the detector's boxes say nothing about how many persons an image holds; the
pose stage therefore runs on boxes placed here, which fixes the person count for every figure.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

IMAGE_SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))  # (width, height)
PERSON_COUNTS: tuple[int, ...] = (1, 5, 20)
JPEG_QUALITY = 90


def request_image(image: np.ndarray) -> str:
    """The ``image`` field CVAT posts: the frame as a base64-encoded JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
