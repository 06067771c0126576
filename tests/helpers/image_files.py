"""Image files that decoders tell apart: high depth, float samples, alpha, an EXIF rotation. Every reader
of frames (calibration, a directory of frames, a request) must give a request's pixels for each."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 24, 32
_ORIENTATION = 0x0112


def _gradient(high: float) -> np.ndarray:
    return np.linspace(0, high, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH)


def grey16_png() -> bytes:
    """A 16-bit grey ramp over the whole range: clipped at 255 it would be white but for a corner."""
    out = io.BytesIO()
    Image.fromarray(_gradient(65535).astype(np.uint16)).save(out, "PNG")
    return out.getvalue()


def float_tiff() -> bytes:
    out = io.BytesIO()
    Image.fromarray(_gradient(1.0).astype(np.float32), mode="F").save(out, "TIFF")
    return out.getvalue()


def rgba_png() -> bytes:
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8), "RGBA").save(out, "PNG")
    return out.getvalue()


def rotated_jpeg() -> bytes:
    """A camera JPEG stored sideways, its EXIF orientation (6) saying how to show it."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[_ORIENTATION] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


# (file name, maker) of each kind, for parametrized tests
KINDS: list[tuple[str, Callable[[], bytes]]] = [
    ("grey16.png", grey16_png),
    ("float.tif", float_tiff),
    ("alpha.png", rgba_png),
    ("camera.jpg", rotated_jpeg),
]
