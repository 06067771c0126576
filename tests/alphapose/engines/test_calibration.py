"""Calibration frames (alphapose/engines/calibration.py) are decoded as a request's image is: the int8
scales are measured on the pixels inference sees, whatever the file's depth, alpha or orientation."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alphapose.cvat.request import decode_image
from alphapose.engines.calibration import CalibrationSet
from alphapose.errors import OptionError
from alphapose.images.decode import DEFAULT_MAX_PIXELS

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


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("grey16.png", grey16_png),
        ("float.tif", float_tiff),
        ("alpha.png", rgba_png),
        ("camera.jpg", rotated_jpeg),
    ],
)
def test_a_calibration_frame_has_the_pixels_of_a_request_image(
    tmp_path: Path, name: str, make: Callable[[], bytes]
) -> None:
    data = make()
    (tmp_path / name).write_bytes(data)
    (calibrated,) = CalibrationSet.from_directory(tmp_path).images()
    np.testing.assert_array_equal(calibrated, decode_image(data, max_pixels=DEFAULT_MAX_PIXELS))


def test_a_frame_a_request_would_refuse_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "page.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(OptionError, match=r"page\.jpg: EPS images are not accepted") as caught:
        list(CalibrationSet.from_directory(tmp_path).images())
    assert caught.value.option == "calibration"
