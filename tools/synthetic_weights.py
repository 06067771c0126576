"""Official-format weights with random values, for tests, benchmarks and trying the function offline.

The files have the exact layout of the official ones (a plain state_dict ``.pth`` per pose preset and a
darknet ``yolov3-spp.weights``), so every loader and verifier runs unchanged. Random networks would
detect an arbitrary number of persons, which makes tests and timings meaningless, so the detector's
three output convolutions are set to constants: with ``persons=True`` one anchor of the coarse head
predicts a person box many times larger than the input everywhere, and NMS reduces those to a single
box that clamps to the whole image; with ``persons=False`` nothing passes the objectness threshold.
Batch-norm statistics are calibrated on noise so activations keep a sane scale (fp16 included).

Every file written is listed with its sha256 in ``synthetic.sha256`` beside it, so that the weights
checks, the function's start-up log and its health answer call it synthetic and it can never be recorded
as an official file.

Command line: ``python -m tools.synthetic_weights DIR [--preset NAME ...] [--no-persons]``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from alphapose.detectors import DEFAULT_DETECTOR, get_detector
from alphapose.models.darknet import YoloV3SPP, write_darknet_weights
from alphapose.models.resnet import DeformConv2d
from alphapose.presets import DEFAULT_PRESET, PRESETS, get_preset
from alphapose.weights import SYNTHETIC_LIST, record_synthetic

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
) -> Path:
    """Write the checkpoint of each preset and the detector weights under their official names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    written = []
    for name in presets:
        path = directory / get_preset(name).checkpoint.name
        torch.save(synthetic_pose_model(name, generator).state_dict(), path)
        written.append(path)
    path = directory / get_detector(DEFAULT_DETECTOR).weights.name
    write_darknet_weights(synthetic_detector(persons, person_score, generator), path)
    written.append(path)
    record_synthetic(written, directory / SYNTHETIC_LIST)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "--preset", action="append", choices=sorted(PRESETS), help="repeatable; default: the default preset"
    )
    parser.add_argument("--no-persons", action="store_true", help="a detector that finds nobody")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_synthetic_weights(
        args.directory, args.preset or [DEFAULT_PRESET], not args.no_persons, seed=args.seed
    )
    print(f"synthetic weights written to {path}")


if __name__ == "__main__":
    main()
