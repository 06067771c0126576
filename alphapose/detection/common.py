"""What AlphaPose's detector families share: COCO's person class, the NMS retry of its
``dynamic_write_results`` (more than 100 boxes left after NMS: NMS again with a threshold 0.05 lower),
and the check of the image they letterbox."""

import numpy as np

PERSON_CLASS = 0
MAX_BOXES = 100
RETRY_STEP = 0.05


def image_size(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of an HxWx3 uint8 RGB image; anything else is a ValueError saying what it got."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {type(image).__name__} of shape {shape}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    return height, width
