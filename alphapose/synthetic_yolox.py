"""Official-format YOLOX release files with random weights, for tests, benchmarks and trying the function.

A file is a dict whose ``"model"`` entry is the network's state_dict, as the official release files, so the
loader and its checks run unchanged. Random networks would find an arbitrary number of persons, so the
three output convolutions of each level are set for a purpose:

* ``"one"``: constant outputs (zero weights); every cell predicts a person box far larger than the input,
  all of the same size, so NMS leaves a single box, which clamps to the whole image, with objectness
  ``person_score``;
* ``"none"``: constant outputs that no row passes the confidence threshold with: nobody is found;
* ``"many"``: the random weights stay, scaled so the outputs depend on the image within a sane range, and
  the biases favour person boxes a few cells wide: tens of overlapping person boxes of varied geometry per
  photo, which exercises NMS. The golden parity tests use this mode.

Batch-norm statistics are calibrated on multi-scale noise by default, or on given inputs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphapose.models.yolox import STRIDES, YOLOX, YoloxVariant, get_variant
from alphapose.synthetic_weights import _calibrate, _randomise

Boxes = Literal["one", "none", "many"]
# "one": every row's box is this many pixels wide and high, whatever the level: 20x the largest input
# size a caller is expected to use (1280), so any two boxes with centres on the input overlap with IoU
# above 0.8.
_HUGE_BOX = 20 * 1280
_CALIBRATION_SIZE = 256
# "many": output scale on the calibration batch (standard deviation before the bias) and biases
_MANY_SPREAD = {"cls": 1.0, "obj": 1.0, "reg": 0.25}
_MANY_OBJ_BIAS = -4.0
_MANY_PERSON_BIAS = 2.0
_MANY_LOG_SIZE = 3.0  # boxes about 20 cells wide, so that scattered candidates overlap


def write_synthetic_yolox(
    path: str | Path,
    variant: str | YoloxVariant,
    boxes: Boxes = "one",
    person_score: float = 0.9,
    seed: int = 0,
    calibration: Tensor | None = None,
) -> Path:
    """Write an official-format release file of ``variant`` with random weights (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = synthetic_yolox(variant, torch.Generator().manual_seed(seed), boxes, person_score, calibration)
    torch.save({"model": model.state_dict()}, path)
    return path


def synthetic_yolox(
    variant: str | YoloxVariant,
    generator: torch.Generator,
    boxes: Boxes = "one",
    person_score: float = 0.9,
    calibration: Tensor | None = None,
) -> YOLOX:
    """A YOLOX network with seeded random weights and output convolutions set for ``boxes``.

    ``calibration``: network inputs (N, 3, S, S) to take the batch-norm statistics from, by default
    :func:`calibration_batch`. A random network keeps a moderate activation scale only on inputs like
    those it was calibrated on (the scale compounds layer by layer on others), so ``"many"`` networks
    meant for given photos are calibrated on those photos.
    """
    if boxes not in ("one", "none", "many"):
        raise ValueError(f"boxes must be 'one', 'none' or 'many', got {boxes!r}")
    if not 0 < person_score < 1:
        raise ValueError(f"person_score must be strictly between 0 and 1, got {person_score}")
    model = YOLOX(variant if isinstance(variant, YoloxVariant) else get_variant(variant))
    _randomise(model, generator)
    sample = calibration_batch(generator) if calibration is None else calibration.float()
    head_inputs = _capture_head_inputs(model)
    _calibrate(model, sample)
    head = model.head
    with torch.no_grad():
        if boxes == "many":
            _normalise_outputs(model, head_inputs)
        for level, stride in enumerate(STRIDES):
            cls, reg, obj = head.cls_preds[level], head.reg_preds[level], head.obj_preds[level]
            if boxes == "many":
                cls.bias.zero_()
                cls.bias[0] = _MANY_PERSON_BIAS
                reg.bias.copy_(torch.tensor([0.0, 0.0, _MANY_LOG_SIZE, _MANY_LOG_SIZE]))
                obj.bias.fill_(_MANY_OBJ_BIAS)
                continue
            for conv in (cls, reg, obj):
                conv.weight.zero_()
            cls.bias.fill_(-8.0)
            cls.bias[0] = 8.0  # person is the best class everywhere
            reg.bias.copy_(torch.tensor([0.0, 0.0, *(2 * [math.log(_HUGE_BOX / stride)])]))
            obj.bias.fill_(math.log(person_score / (1 - person_score)) if boxes == "one" else -20.0)
    return model


def calibration_batch(generator: torch.Generator, size: int = _CALIBRATION_SIZE, count: int = 3) -> Tensor:
    """Photo-like noise in 0..255: random fields at every scale from 2 pixels to the whole image, with
    more power at coarse scales as in natural images, and a band of the canvas grey at the bottom."""
    image = torch.zeros(count, 3, size, size)
    cell = 2
    while cell <= size:
        field = torch.rand(count, 3, size // cell, size // cell, generator=generator) - 0.5
        smooth = F.interpolate(field, size=(size, size), mode="bilinear", align_corners=False)
        image += smooth * math.sqrt(cell)
        cell *= 2
    low = image.amin(dim=(1, 2, 3), keepdim=True)
    high = image.amax(dim=(1, 2, 3), keepdim=True)
    image = (image - low) / (high - low) * 255
    image[:, :, size * 3 // 4 :] = 114
    return image


def _output_convs(model: YOLOX) -> dict[str, nn.ModuleList]:
    head = model.head
    return {"cls": head.cls_preds, "reg": head.reg_preds, "obj": head.obj_preds}


def _capture_head_inputs(model: YOLOX) -> dict[nn.Module, Tensor]:
    """Record what the output convolutions see in the next forward pass (the calibration pass)."""
    inputs: dict[nn.Module, Tensor] = {}

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        inputs[module] = args[0].detach()
        hooks.pop(module).remove()

    convs = [conv for group in _output_convs(model).values() for conv in group]
    hooks = {conv: conv.register_forward_pre_hook(record) for conv in convs}
    return inputs


def _normalise_outputs(model: YOLOX, inputs: dict[nn.Module, Tensor]) -> None:
    """Scale each output convolution's weights to the spread ``_MANY_SPREAD`` on the calibration batch.

    The calibration pass normalises with the batch's own statistics, which the running statistics now
    hold, so its inputs to the output convolutions are those of an eval pass on the same batch.
    """
    for kind, group in _output_convs(model).items():
        for conv in group:
            spread = F.conv2d(inputs[conv], conv.weight).std()
            conv.weight.mul_(_MANY_SPREAD[kind] / spread)
