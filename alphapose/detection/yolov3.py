"""YOLOv3-SPP, AlphaPose's default person detector: loading, pre- and post-processing.

Letterboxing, the objectness threshold, the person-only filter, the NMS convention and the mapping back to
image pixels all follow the official ``YOLODetector`` (detector/yolo_api.py), because the pose stage and
pose NMS downstream were tuned on exactly those boxes and scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from torch import Tensor

from alphapose.detection.common import MAX_BOXES, PERSON_CLASS, RETRY_STEP
from alphapose.detection.darknet import NUM_ATTRS, YoloV3SPP, read_darknet_weights
from alphapose.detection.detectors import DetectorSpec
from alphapose.errors import WeightsError
from alphapose.images.decode import rgb_image_size

CANVAS_VALUE = 128  # grey of the letterbox border


@dataclass(frozen=True)
class Letterbox:
    """Where an image sits in the square network input: scaled by ``scale`` and centred on ``size``."""

    size: int
    scale: float
    width: int
    height: int

    def to_image(self, boxes_xyxy: Tensor) -> Tensor:
        """Map (M, 4) boxes from network input pixels back to image pixels, clamped to [0, w] x [0, h].

        This is the official arithmetic in float32: the scale recomputed as ``(1 / dims) * size`` (what
        ``size / tensor`` does in PyTorch), the float padding ``(size - scale * dim) / 2`` although the
        pasted image was placed at the integer offset, and clamping to the width itself, not width - 1.
        """
        dims = torch.tensor([self.width, self.height], dtype=torch.float32, device=boxes_xyxy.device)
        scale = (dims.reciprocal() * self.size).min()
        pad = ((self.size - scale * dims) / 2).repeat(2)
        boxes = (boxes_xyxy.float() - pad) / scale
        limits = dims.repeat(2)
        return torch.minimum(boxes.clamp(min=0), limits)


def letterbox(image: np.ndarray, size: int) -> tuple[Tensor, Letterbox]:
    """Resize an HxWx3 uint8 RGB image to fit ``size`` x ``size`` keeping its aspect, centred on grey.

    Returns the (3, size, size) uint8 RGB tensor (see :func:`network_input` for the values the network
    takes) and the placement. As the official: scale
    ``min(size / w, size / h)``, pasted size ``int(w * scale)`` x ``int(h * scale)``, bicubic resampling,
    offsets ``(size - new) // 2``. (A side that would round to 0 pixels is kept at 1, where the official
    code fails.)
    """
    height, width = rgb_image_size(image)
    scale = min(size / width, size / height)
    new_width, new_height = max(1, int(width * scale)), max(1, int(height * scale))
    resized = cv2.resize(np.ascontiguousarray(image), (new_width, new_height), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((size, size, 3), CANVAS_VALUE, dtype=np.uint8)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = resized
    tensor = torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1)))
    return tensor, Letterbox(size=size, scale=scale, width=width, height=height)


def network_input(pixels: Tensor) -> Tensor:
    """uint8 letterbox pixels as the detector's float32 input in [0, 1], on the pixels' device.

    The official code divides by 255 on the CPU before the upload; PyTorch's CUDA kernel divides by a
    scalar as a multiplication by its rounded reciprocal, which differs in the last bit for 126 of the
    256 values. Looking the values up in a table
    divided on the CPU gives the official floats on any device, and the upload stays uint8 (4x smaller).
    """
    return torch.take(_unit_table(pixels.device), pixels.long())


@cache
def _unit_table(device: torch.device) -> Tensor:
    return torch.arange(256, dtype=torch.float32).div(255.0).to(device)


def _nms_bound(threshold: float) -> float:
    """The float64 bound ``b`` for which ``iou > b`` decides like the official ``float32(iou) >= float32(t)``.

    The official kernel compares a float32 IoU with a float32 threshold and suppresses on equality; an IoU
    rounds to at least ``float32(t)`` exactly when it lies above the midpoint between ``float32(t)`` and
    the float32 below it (on the midpoint itself, when ties-to-even rounds up). So an IoU of exactly 3/5
    is suppressed at 0.6, as in the official code.
    """
    upper = np.float32(threshold)
    lower = np.nextafter(upper, np.float32(-np.inf))
    midpoint = (float(lower) + float(upper)) / 2  # exact: the two differ in the last of 24 bits
    ties_round_up = int(upper.view(np.uint32)) % 2 == 0
    return float(np.nextafter(midpoint, -np.inf)) if ties_round_up else midpoint


def _nms(boxes_xyxy: Tensor, threshold: float) -> Tensor:
    """Indices kept by greedy NMS over boxes already sorted best first, in that order.

    The official NMS measures areas as ``(x2 - x1 + 1) * (y2 - y1 + 1)`` and overlaps with the same +1.
    Adding 1 to x2 and y2 turns torchvision's plain IoU into exactly that quantity: the shift is exact in
    float64 for float32 input, so torchvision computes the +1 IoU with only float64 rounding. The official
    float32 arithmetic, rounded at each step, decides the same way except for IoUs within float32 rounding
    (about 1e-7) of the threshold; with exactly representable corners the two agree on every pair. Scores
    passed to torchvision are the ranks, so its own sort reproduces the given order even for tied objectness.
    """
    shifted = boxes_xyxy.double()
    shifted[:, 2:] += 1
    ranks = torch.arange(len(shifted), 0, -1, dtype=torch.float64)
    return torchvision.ops.nms(shifted, ranks, _nms_bound(threshold))


def select_persons(
    pred: Tensor, confidence: float = 0.1, nms_threshold: float = 0.6
) -> tuple[Tensor, Tensor]:
    """Person boxes (M, 4) xyxy in input pixels and their objectness (M,) from one image's (B, 85) rows.

    As the official ``write_results``/``dynamic_write_results``: keep objectness > ``confidence`` (strictly),
    keep rows whose best class (first maximum of the 80 scores) is person and is not 0, sort by objectness
    (stable: ties stay in network order), NMS with the +1 convention suppressing IoU >= ``nms_threshold``,
    and when more than 100 boxes survive, NMS again at ``nms_threshold - 0.05``. The score passed on is the
    objectness, not objectness x class score. Results are float32 on the CPU, best first.
    """
    if pred.dim() != 2 or pred.shape[1] != NUM_ATTRS:
        raise ValueError(f"expected predictions of shape (B, {NUM_ATTRS}), got {tuple(pred.shape)}")
    rows = pred[pred[:, 4] > confidence]
    class_score, class_index = rows[:, 5:].max(dim=1)
    rows = rows[(class_index == PERSON_CLASS) & (class_score != 0)].float().cpu()
    rows = rows[torch.argsort(rows[:, 4], descending=True, stable=True)]
    centres, sizes = rows[:, 0:2], rows[:, 2:4]
    boxes = torch.cat((centres - sizes / 2, centres + sizes / 2), dim=1)
    keep = _nms(boxes, nms_threshold)
    if len(keep) > MAX_BOXES:
        keep = _nms(boxes, nms_threshold - RETRY_STEP)
    return boxes[keep], rows[keep, 4]


def load(weights: Path, input_size: int, detector: DetectorSpec) -> YoloV3SPP:
    """``detector``'s network (YOLOv3-SPP at ``input_size``) on the CPU with darknet ``.weights`` loaded,
    in eval mode.

    The file fills every parameter and batch-norm statistic, so the network is allocated without
    initialisation.
    """
    if not weights.is_file():
        raise WeightsError(f"detector weights not found: {weights}")
    with torch.device("meta"):
        model = detector.build(input_size)
    model = model.to_empty(device="cpu")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.num_batches_tracked.zero_()  # the one tensor the file does not hold
    read_darknet_weights(model, weights)
    return model.eval()


def prepare(images: Sequence[np.ndarray], size: int, device: torch.device) -> tuple[Tensor, list[Letterbox]]:
    """The network input for RGB images, on ``device``, and where each image sits in it.

    The letterboxes travel to the device as uint8 (4x less to copy) and become floats there.
    """
    canvases, placements = zip(*(letterbox(image, size) for image in images), strict=True)
    return network_input(torch.stack(canvases).to(device)), list(placements)


def select(
    pred: Tensor, placement: Letterbox, confidence: float, nms_threshold: float
) -> tuple[Tensor, Tensor]:
    """One image's person boxes in image pixels and their objectness, from its raw predictions."""
    boxes, scores = select_persons(pred, confidence, nms_threshold)
    return placement.to_image(boxes), scores
