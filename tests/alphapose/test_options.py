"""PipelineOptions refuses every option of the wrong type or out of range, naming the option."""

from __future__ import annotations

import numpy as np
import pytest

from alphapose import PipelineOptions
from alphapose.errors import OptionError


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("preset", ["fastpose_res50_coco"]),  # unhashable: must not escape as a TypeError
        ("preset", "nope"),
        ("detector", 3),
        ("device", 0),
        ("device", "gpu"),
        ("detector_size", "640"),
        ("detector_size", 640.0),
        ("detector_size", True),
        ("detector_size", 100),
        ("detector_size", 4128),  # a multiple of 32, above the largest size a detector is run at
        ("flip", "no"),  # truthy: the flip test would run
        ("flip", 1),
        ("flip", None),
        ("max_batch", 8.0),
        ("max_batch", True),
        ("max_batch", "8"),
        ("max_batch", 0),
        ("detector_confidence", "0.5"),
        ("detector_confidence", True),
        ("detector_confidence", float("nan")),
        ("detector_nms", 1.5),
        ("detector_nms", None),
        ("precision", ["fp32"]),
        ("precision", "half"),
        ("engine", None),
        ("engine", 1),
        ("calibration", 5),
        ("calibration", ["frames"]),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(OptionError) as caught:
        PipelineOptions(**{option: value})
    assert caught.value.option == option
    assert str(caught.value).startswith(f"{option}={value!r}: ")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("flip", True),
        ("flip", False),
        ("max_batch", np.int64(8)),
        ("detector_size", 320),
        ("detector_size", 4096),
        ("detector_size", None),
        ("detector_confidence", 0),
        ("detector_confidence", np.float32(0.25)),
        ("detector_nms", 1),
        ("device", "cuda:1"),
        ("engine", "detector=onnxruntime,pose=openvino"),
    ],
)
def test_good_values_of_every_accepted_type_pass(option: str, value: object) -> None:
    assert getattr(PipelineOptions(**{option: value}), option) == value
