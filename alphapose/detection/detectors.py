"""The detector table: every supported person detector is one row of data.

A row names the detector's family (the code that loads it and turns images into boxes, see
:mod:`alphapose.detection.person_detector`), the builder of its network, its official weights file, the
input size AlphaPose runs it at, and its cost and accuracy as its authors publish them (for the README's
table; never used for decisions). As in torchvision's model builders, each member of a family has its
own builder and its weights are data: a row is the only place a detector is named. Family and builder
are named by words, resolved where networks are built, so the table (and the options and command-line
flags checked against it) reads without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alphapose.errors import lookup
from alphapose.weights.files import WeightsFile, google_drive

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class DetectorSpec:
    """One person detector and the official file holding its weights."""

    name: str
    description: str
    family: str  # key of alphapose.detection.person_detector.FAMILIES
    network: str  # the builder's name in alphapose.detection.builders.BUILDERS
    weights: WeightsFile
    input_size: int  # the side of the square network input AlphaPose uses
    gflops: float  # one forward at input_size, as published
    coco_ap: str  # COCO accuracy as published, with the metric and the split

    def build(self, *size: int) -> nn.Module:
        """The network with uninitialised weights (the networks are imported here), called by the family's
        load: YOLOv3-SPP's builder takes the input size, YOLOX's nothing."""
        from alphapose.detection.builders import BUILDERS

        return BUILDERS[self.network](*size)


_YOLOX_RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/"


def _yolox(variant: str, description: str, gflops: float, ap: float) -> DetectorSpec:
    """A YOLOX row: AlphaPose runs every variant at 640 with the same processing (detector/yolox_api.py)."""
    file_name = f"yolox_{variant}.pth"
    return DetectorSpec(
        name=f"yolox-{variant}",
        description=description,
        family="yolox",
        network=f"yolox_{variant}",
        weights=WeightsFile(file_name, _YOLOX_RELEASE + file_name),
        input_size=640,
        gflops=gflops,
        coco_ap=f"{ap} AP@0.5:0.95 (val2017)",
    )


DETECTORS: dict[str, DetectorSpec] = {
    d.name: d
    for d in (
        DetectorSpec(
            name="yolov3-spp",
            description="YOLOv3-SPP (darknet), AlphaPose's default detector",
            family="yolov3",
            network="YoloV3SPP",
            weights=WeightsFile("yolov3-spp.weights", google_drive("1D47msNOOiJKvPOXlnpyzdKA3k6E97NTC")),
            input_size=608,
            gflops=141.45,
            coco_ap="60.6 AP@0.5 (test-dev)",
        ),
        _yolox("s", "YOLOX-s: a fifth of YOLOv3-SPP's operations, for CPUs", 26.8, 40.5),
        _yolox("m", "YOLOX-m", 73.8, 46.9),
        _yolox("l", "YOLOX-l", 155.6, 49.7),
        _yolox("x", "YOLOX-x, AlphaPose's YOLOX default, for GPUs", 281.9, 51.1),
    )
}

DEFAULT_DETECTOR = "yolov3-spp"


def get_detector(name: str) -> DetectorSpec:
    """The detector called ``name``; the error lists the valid names."""
    return lookup(DETECTORS, name, "detector")


def detector_for_file(file_name: str) -> DetectorSpec | None:
    """The detector whose official weights file has this name."""
    return next((d for d in DETECTORS.values() if d.weights.name == file_name), None)
