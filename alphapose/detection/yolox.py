"""Person boxes from a YOLOX network, with AlphaPose's YOLOX pre- and post-processing.

The official path (detector/yolox_api.py) hands YOLOX the frame as OpenCV reads it, in BGR order, pasted
at the top-left of a grey 640x640 canvas, and keeps person rows whose objectness x class score reaches
the confidence threshold, NMS'd with torchvision. The score passed on to the pose stage (and to CVAT) is
the objectness alone. Every step below follows that code, because the pose stage and pose NMS were tuned
on exactly those boxes and scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from torch import Tensor

from alphapose.detection.common import MAX_BOXES, PERSON_CLASS, RETRY_STEP
from alphapose.detection.detectors import DETECTORS, DetectorSpec, detector_for_file, get_detector
from alphapose.detection.yolox_net import NUM_ATTRS, YOLOX
from alphapose.engines.fuse import fold_batch_norms
from alphapose.errors import WeightsError
from alphapose.images.decode import rgb_image_size
from alphapose.weights.strict import load_checkpoint, load_strictly, network_shapes, other_fit_hint

INPUT_SIZE = 640  # AlphaPose feeds every variant 640x640 (detector/yolox_cfg.py)
CANVAS_VALUE = 114  # grey of the unused part of the canvas


@dataclass(frozen=True)
class Placement:
    """Where an image sits in the square network input: scaled by ``scale``, at the top-left corner."""

    size: int
    scale: float
    width: int
    height: int

    def to_image(self, boxes_xyxy: Tensor) -> Tensor:
        """Map (M, 4) boxes from network input pixels back to image pixels, clamped to [0, w] x [0, h].

        The official arithmetic in float32: the scale recomputed from the float32 image size as
        ``size / dims`` (not the float64 ``scale`` the image was resized with), a division, no offset.
        """
        dims = torch.tensor([self.width, self.height], dtype=torch.float32, device=boxes_xyxy.device)
        scale = (self.size / dims).min()
        boxes = boxes_xyxy.float() / scale
        return torch.minimum(boxes.clamp(min=0), dims.repeat(2))


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[Tensor, Placement]:
    """An HxWx3 uint8 RGB image as YOLOX's (3, size, size) uint8 BGR input, and where it was placed.

    As the official ``preproc``: scale ``r = min(size / h, size / w)``, ``cv2.resize`` with linear
    interpolation to ``int(w * r)`` x ``int(h * r)``, pasted at the top-left of a canvas of 114. The
    network takes these values as float32, 0..255 with no normalisation. (A side that would round to 0
    pixels is kept at 1, where the official code fails.)
    """
    height, width = rgb_image_size(image)
    scale = min(size / height, size / width)
    new_width, new_height = max(1, int(width * scale)), max(1, int(height * scale))
    bgr = np.ascontiguousarray(image[:, :, ::-1])  # the official network reads OpenCV's channel order
    resized = cv2.resize(bgr, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), CANVAS_VALUE, dtype=np.uint8)
    canvas[:new_height, :new_width] = resized
    tensor = torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1)))
    return tensor, Placement(size=size, scale=scale, width=width, height=height)


def select_persons(
    pred: Tensor, confidence: float = 0.1, nms_threshold: float = 0.6
) -> tuple[Tensor, Tensor]:
    """Person boxes (M, 4) xyxy in input pixels and their objectness (M,) from one image's (B, 85) rows.

    As the official ``postprocess``/``dynamic_write_results``: boxes from centre and size, best class
    (first maximum of the 80 scores), keep rows with objectness x best class score >= ``confidence``
    whose best class is person, torchvision's ``batched_nms`` scored by objectness x class score
    (suppressing IoU > ``nms_threshold``), and when more than 100 boxes survive, NMS again at
    ``nms_threshold - 0.05``. Runs on the predictions' device; results are float32 on the CPU, in NMS
    order (best objectness x class score first).
    """
    if pred.dim() != 2 or pred.shape[1] != NUM_ATTRS:
        raise ValueError(f"expected predictions of shape (B, {NUM_ATTRS}), got {tuple(pred.shape)}")
    pred = pred.float()
    class_score, class_index = pred[:, 5:].max(dim=1)
    ranking = pred[:, 4] * class_score
    keep = (ranking >= confidence) & (class_index == PERSON_CLASS)
    rows, ranking, classes = pred[keep], ranking[keep], class_index[keep]
    centres, half_sizes = rows[:, 0:2], rows[:, 2:4] / 2
    boxes = torch.cat((centres - half_sizes, centres + half_sizes), dim=1)
    kept = torchvision.ops.batched_nms(boxes, ranking, classes, nms_threshold)
    if len(kept) > MAX_BOXES:
        kept = torchvision.ops.batched_nms(boxes, ranking, classes, nms_threshold - RETRY_STEP)
    return boxes[kept].cpu(), rows[kept, 4].cpu()


def load(weights: Path, input_size: int, detector: DetectorSpec) -> YOLOX:
    """``detector``'s network on the CPU with its release file loaded, in eval mode.

    The network reads any input size that is a multiple of 32; ``input_size`` is checked here.
    """
    if input_size <= 0 or input_size % 32:
        raise ValueError(f"the YOLOX input size must be a positive multiple of 32, got {input_size}")
    return load_yolox(weights, detector)


def prepare(images: Sequence[np.ndarray], size: int, device: torch.device) -> tuple[Tensor, list[Placement]]:
    """The network input for RGB images, on ``device``, and where each image sits in it.

    The canvases travel to the device as uint8 (4x less to copy); their integer values are exact in
    float32 on any device.
    """
    canvases, placements = zip(*(letterbox(image, size) for image in images), strict=True)
    return torch.stack(canvases).to(device).float(), list(placements)


def select(
    pred: Tensor, placement: Placement, confidence: float, nms_threshold: float
) -> tuple[Tensor, Tensor]:
    """One image's person boxes in image pixels and their objectness, from its raw predictions."""
    boxes, scores = select_persons(pred, confidence, nms_threshold)
    return placement.to_image(boxes), scores


def read_yolox_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The network weights of an official YOLOX release file: the state_dict under its ``"model"`` key."""
    path = Path(path)
    checkpoint = load_checkpoint(path, "YOLOX weights")
    state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        found = sorted(checkpoint)[:5] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise WeightsError(
            f"{path} is not a YOLOX release checkpoint: expected a dict whose 'model' entry is the "
            f"network's state_dict, found {found}"
        )
    return dict(state)


def yolox_detectors() -> dict[str, DetectorSpec]:
    """The rows of the detector table whose family is YOLOX."""
    return {name: spec for name, spec in DETECTORS.items() if spec.family == "yolox"}


@cache
def expected_shapes(detector: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a YOLOX detector's state_dict."""
    return network_shapes(yolox_detectors()[detector].build)


def load_yolox(
    path: str | Path,
    detector: str | DetectorSpec | None = None,
    device: str | torch.device = "cpu",
    *,
    fold_batch_norm: bool = False,
) -> YOLOX:
    """A YOLOX detector's network with its official release file loaded strictly, in eval mode on ``device``.

    The detector defaults to the one whose official file name this is (``yolox_m.pth`` -> yolox-m). The
    file is read with ``weights_only=True`` and must match the network key for key and shape for shape; a
    file of another YOLOX detector is refused naming the one it fits. ``fold_batch_norm`` folds the batch
    norms after the strict load (same outputs to float rounding, faster; the state_dict is no longer the
    file's).
    """
    spec = get_detector(detector) if isinstance(detector, str) else detector
    spec = spec or detector_for_file(Path(path).name)
    if spec is None or spec.family != "yolox":
        names = ", ".join(d.weights.name for d in yolox_detectors().values())
        raise WeightsError(
            f"cannot tell the YOLOX variant of {Path(path).name!r}: name the detector, or keep the "
            f"official file name ({names})"
        )
    state = read_yolox_checkpoint(path)
    candidates = {name: partial(expected_shapes, name) for name in yolox_detectors() if name != spec.name}

    hint = other_fit_hint(
        candidates,
        named=" / ".join,
        advice=lambda fits: f"use that variant (its official file is {DETECTORS[fits[0]].weights.name})",
        none="It fits no YOLOX variant either.",
    )
    model = load_strictly(
        spec.build, state, source=path, target=spec.name, expected=expected_shapes(spec.name), hint=hint
    )
    if fold_batch_norm:
        fold_batch_norms(model)
    return model.to(device)
