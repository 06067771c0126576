"""Official-format weights with random values, for tests, benchmarks and trying the function offline.

The files have the exact layout of the official ones (a plain state_dict ``.pth`` per pose preset, a
darknet ``yolov3-spp.weights``, a YOLOX release file ``yolox_*.pth`` holding the state_dict as its
``"model"``), so every loader and verifier runs unchanged. Random networks would detect an arbitrary
number of persons, which makes tests and timings meaningless, so the detectors' output convolutions are
set to constants: with ``persons=True`` every cell (YOLOX) or one anchor of the coarse head (YOLOv3)
predicts a person box many times larger than the input, and NMS reduces those to a single box that
clamps to the whole image; with ``persons=False`` nothing passes the confidence threshold. YOLOX files
can also keep random output convolutions (``boxes="many"``, see :func:`synthetic_yolox`), which the
golden parity tests use. Batch-norm statistics are calibrated on noise so activations keep a sane scale
(fp16 included).

Every file carries a mark inside it (``alphapose.weights.download.mark_synthetic`` for the PyTorch files, the
darknet header's ``SYNTHETIC_DARKNET_SEEN``), so that wherever it is copied the weights checks, the
function's start-up log, its health answer and the tools call it synthetic, it can never be recorded as an
official file, and staging a deployment or building an image from it stops unless asked for.

Command line: ``python -m tools.synthetic_weights DIR [--preset NAME ...] [--detector NAME ...]
[--no-persons]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphapose.detection.darknet import YoloV3SPP, write_darknet_weights
from alphapose.detection.detectors import DEFAULT_DETECTOR, DETECTORS, get_detector
from alphapose.detection.yolox_net import STRIDES, YOLOX
from alphapose.errors import CommandLineParser, run_command
from alphapose.pose.models.resnet import DeformConv2d
from alphapose.pose.presets import DEFAULT_PRESET, PRESETS, get_preset
from alphapose.weights.download import SYNTHETIC_DARKNET_SEEN, mark_synthetic
from tools.errors import CommandError

_NUM_ATTRS = 85  # x, y, w, h, objectness, 80 classes
# exp(tw) so that the coarse head's smallest anchor (90 px) grows to 20x the largest input size (608):
# any two such boxes a grid apart overlap with IoU > 0.6, whatever input size the detector runs at.
_LOG_BOX_GROWTH = math.log(20 * 608 / 90)


def write_synthetic_weights(
    directory: str | Path,
    presets: Iterable[str] = (DEFAULT_PRESET,),
    persons: bool = True,
    person_score: float = 0.9,
    seed: int = 0,
    detectors: Iterable[str] = (DEFAULT_DETECTOR,),
) -> Path:
    """Write the checkpoint of each preset and each detector's weights under their official names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for name in presets:
        path = directory / get_preset(name).checkpoint.name
        torch.save(mark_synthetic(synthetic_pose_model(name, generator).state_dict()), path)
    for name in detectors:
        spec = get_detector(name)
        path = directory / spec.weights.name
        if spec.family == "yolox":
            model = synthetic_yolox(name, generator, "one" if persons else "none", person_score)
            torch.save({"model": mark_synthetic(model.state_dict())}, path)
        else:
            model = synthetic_detector(persons, person_score, generator)
            write_darknet_weights(model, path, seen=SYNTHETIC_DARKNET_SEEN)
    return directory


def synthetic_pose_model(preset_name: str, generator: torch.Generator) -> nn.Module:
    """A preset's network with random weights whose heatmap peaks land in a plausible score range."""
    model = get_preset(preset_name).build()
    _randomise(model, generator)
    _calibrate(model, _calibration_batch(generator, 256, 192) - 0.45)  # crops are roughly centred on zero
    head = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.mul_(0.1)
        head.bias.fill_(0.6)
    return model


def synthetic_detector(persons: bool, person_score: float, generator: torch.Generator) -> YoloV3SPP:
    """YOLOv3-SPP with random features and constant output heads (see the module docstring)."""
    model = YoloV3SPP(input_size=256)
    _randomise(model, generator)
    _calibrate(model, _calibration_batch(generator, 256, 256))
    heads = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    logit = math.log(person_score / (1 - person_score))
    with torch.no_grad():
        for index, head in enumerate(heads):
            head.weight.zero_()
            bias = head.bias.view(-1, _NUM_ATTRS)  # anchor-major channel layout
            bias.fill_(-8.0)
            bias[:, 0:2] = 0.0  # box centre in the middle of its cell
            bias[:, 5] = 8.0  # class 0 (person) is the best class
            if persons and index == 0:  # one anchor of the coarse head fires everywhere
                bias[0, 2:4] = _LOG_BOX_GROWTH
                bias[0, 4] = logit
    return model


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
    variant: str | Callable[[], YOLOX],
    boxes: Boxes = "one",
    person_score: float = 0.9,
    seed: int = 0,
    calibration: Tensor | None = None,
) -> Path:
    """Write an official-format release file of ``variant`` with random weights (see the module docstring).

    ``variant``: a YOLOX detector's name, or a network builder (``yolox_net.yolox_tiny``, the cheapest
    network, is in no detector's row).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = synthetic_yolox(variant, torch.Generator().manual_seed(seed), boxes, person_score, calibration)
    torch.save({"model": mark_synthetic(model.state_dict())}, path)
    return path


def synthetic_yolox(
    variant: str | Callable[[], YOLOX],
    generator: torch.Generator,
    boxes: Boxes = "one",
    person_score: float = 0.9,
    calibration: Tensor | None = None,
) -> YOLOX:
    """A YOLOX network with seeded random weights and output convolutions set for ``boxes``.

    ``calibration``: network inputs (N, 3, S, S) to take the batch-norm statistics from, by default
    :func:`yolox_calibration_batch`. A random network keeps a moderate activation scale only on inputs like
    those it was calibrated on (the scale compounds layer by layer on others), so ``"many"`` networks
    meant for given photos are calibrated on those photos.
    """
    if boxes not in ("one", "none", "many"):
        raise ValueError(f"boxes must be 'one', 'none' or 'many', got {boxes!r}")
    if not 0 < person_score < 1:
        raise ValueError(f"person_score must be strictly between 0 and 1, got {person_score}")
    if isinstance(variant, str) and get_detector(variant).family != "yolox":
        raise ValueError(f"{variant} is not a YOLOX detector")
    model = (get_detector(variant).build if isinstance(variant, str) else variant)()
    _randomise(model, generator)
    sample = yolox_calibration_batch(generator) if calibration is None else calibration.float()
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


def yolox_calibration_batch(
    generator: torch.Generator, size: int = _CALIBRATION_SIZE, count: int = 3
) -> Tensor:
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


def _randomise(model: nn.Module, generator: torch.Generator) -> None:
    """Uniform fan-in scaled weights (reproducible from the seed), identity-like batch norms.

    Every weight is drawn from ``generator``: a layer left to its own initialisation would take the global
    random state and make the file differ from run to run (the deformable convolutions did).
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | DeformConv2d):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.8, 1.2, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)


def _calibration_batch(generator: torch.Generator, height: int, width: int) -> torch.Tensor:
    """Noise and smooth gradients in [0, 1]: statistics from both keep activations bounded on photos too."""
    noise = torch.rand(2, 3, height, width, generator=generator)
    ramp_y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    ramp_x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    smooth = torch.stack(
        [torch.stack([ramp_y, ramp_x, 1 - ramp_y]), torch.stack([ramp_x, 1 - ramp_x, ramp_y])]
    )
    return torch.cat([noise, smooth])


def _calibrate(model: nn.Module, sample: torch.Tensor) -> None:
    """Set every batch norm's running statistics to the batch statistics of one noise batch."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(sample)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = CommandLineParser(prog="python -m tools.synthetic_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "--preset", action="append", choices=sorted(PRESETS), help="repeatable; default: the default preset"
    )
    parser.add_argument(
        "--detector",
        action="append",
        choices=list(DETECTORS),
        help=f"repeatable; default: {DEFAULT_DETECTOR}",
    )
    parser.add_argument("--no-persons", action="store_true", help="detectors that find nobody")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        path = write_synthetic_weights(
            args.directory,
            args.preset or [DEFAULT_PRESET],
            not args.no_persons,
            seed=args.seed,
            detectors=args.detector or [DEFAULT_DETECTOR],
        )
    except OSError as exc:  # a file given as the directory, a directory it may not write
        return CommandError(f"cannot write weights in {args.directory}: {exc.strerror or exc}", 1).report()
    print(f"synthetic weights written to {path}")
    return 0


if __name__ == "__main__":
    run_command(main, "tools.synthetic_weights")
