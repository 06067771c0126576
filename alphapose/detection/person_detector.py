"""The person detector: image in, person boxes and scores out, with each family's official processing.

A detector family is the code that differs between detectors (how weights load, how images become the
network input, how raw predictions become person boxes); the detector table
(:mod:`alphapose.detection.detectors`) names the family of each detector, :data:`FAMILIES` resolves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from alphapose.detection import yolov3, yolox
from alphapose.detection.detectors import DetectorSpec


@dataclass(frozen=True)
class DetectorFamily:
    """The three steps that differ between detector families."""

    # (weights file, input size, detector's row) -> eval-mode network on the CPU
    load: Callable[[Path, int, DetectorSpec], nn.Module]
    prepare: Callable[[Sequence[np.ndarray], int, torch.device], tuple[Tensor, list[Any]]]
    select: Callable[[Tensor, Any, float, float], tuple[Tensor, Tensor]]  # (pred, placement, conf, nms)


FAMILIES: dict[str, DetectorFamily] = {
    "yolov3": DetectorFamily(load=yolov3.load, prepare=yolov3.prepare, select=yolov3.select),
    "yolox": DetectorFamily(load=yolox.load, prepare=yolox.prepare, select=yolox.select),
}


class PersonDetector:
    """Image in, person boxes out: the family's input, the network, the family's person selection."""

    def __init__(
        self,
        model: nn.Module,
        family: DetectorFamily,
        input_size: int,
        confidence: float = 0.1,
        nms_threshold: float = 0.6,
    ) -> None:
        self.model = model.eval()  # batch norm must use its running statistics
        self.family = family
        self.input_size = input_size
        self.confidence = confidence
        self.nms_threshold = nms_threshold

    @property
    def device(self) -> torch.device:
        """The network's device; the CPU for a network run by another engine (it holds no parameters)."""
        parameter = next(self.model.parameters(), None)
        return torch.device("cpu") if parameter is None else parameter.device

    def __call__(self, image: np.ndarray) -> tuple[Tensor, Tensor]:
        """Boxes (M, 4) xyxy float32 in image pixels and their scores (M,), on the CPU, best first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[tuple[Tensor, Tensor]]:
        """:meth:`__call__` for several images with one forward pass.

        The 100-box NMS retry applies to each image; the official applies it to a whole batch's total, so
        this equals the official run one image at a time.
        """
        if not images:
            return []
        inputs, placements = self.family.prepare(images, self.input_size, self.device)
        with torch.inference_mode():
            # predictions stay on the device: the selection brings back only the rows it keeps
            predictions = self.model(inputs)
        return [
            self.family.select(pred, placement, self.confidence, self.nms_threshold)
            for pred, placement in zip(predictions, placements, strict=True)
        ]
