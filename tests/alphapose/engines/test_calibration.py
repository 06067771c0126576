"""Calibration frames (alphapose/engines/calibration.py) are decoded as a request's image is: the int8
scales are measured on the pixels inference sees, whatever the file's depth, alpha or orientation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from image_files import KINDS

from alphapose.cvat.request import decode_image
from alphapose.engines.calibration import CalibrationSet
from alphapose.errors import OptionError
from alphapose.images import DEFAULT_MAX_PIXELS


@pytest.mark.parametrize(("name", "make"), KINDS)
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
