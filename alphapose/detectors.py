"""The detector table: every supported person detector is one row of data.

A row names the detector's family (the code that loads it and turns images into boxes, see
:mod:`alphapose.detection`), its official weights file and the input size AlphaPose runs it at.
"""

from __future__ import annotations

from dataclasses import dataclass

from alphapose.errors import lookup
from alphapose.sources import WeightsFile, google_drive


@dataclass(frozen=True)
class DetectorSpec:
    """One person detector and the official file holding its weights."""

    name: str
    description: str
    family: str  # key of alphapose.detection.FAMILIES
    weights: WeightsFile
    input_size: int  # the side of the square network input AlphaPose uses


DETECTORS: dict[str, DetectorSpec] = {
    d.name: d
    for d in (
        DetectorSpec(
            name="yolov3-spp",
            description="YOLOv3-SPP (darknet), AlphaPose's default detector",
            family="yolov3",
            weights=WeightsFile("yolov3-spp.weights", google_drive("1D47msNOOiJKvPOXlnpyzdKA3k6E97NTC")),
            input_size=608,
        ),
    )
}

DEFAULT_DETECTOR = "yolov3-spp"


def get_detector(name: str) -> DetectorSpec:
    """The detector called ``name``; the error lists the valid names."""
    return lookup(DETECTORS, name, "detector")


def detector_for_file(file_name: str) -> DetectorSpec | None:
    """The detector whose official weights file has this name."""
    return next((d for d in DETECTORS.values() if d.weights.name == file_name), None)
