"""Golden heatmaps of the official FastPose-DUC (SE-ResNet-152, unshuffle ResNet-50) and HRNet-W32 networks.

The OFFICIAL classes (``FastPose_DUC`` and ``PoseHighResolutionNet`` of AlphaPose c60106d, built from the
COCO configs below) load seeded checkpoints (:func:`seeded_state_dict`, official keys and dtypes, as a
``.pth`` file would hold them) with a strict ``load_state_dict`` and run on a fixed batch of two crops; the
heatmaps are what our networks must reproduce from the same
checkpoints (tests/golden/test_golden_coco_zoo.py).

The official modules are imported from the checkout under a private package name (the project's own
package is also called ``alphapose``), with two stand-ins, used only here:

- ``alphapose.models.builder``: the real module imports the whole official package (datasets, compiled
  extensions); only its ``SPPE.register_module`` decorator is used, replaced by one that returns the class.
- ``torchvision.models.resnet{50,152}``: ``FastPose_DUC.__init__`` calls them with ``pretrained=True`` to
  fetch ImageNet weights (no network access here); the stand-in returns a module without parameters, so
  the constructor copies nothing, and the seeded checkpoint then sets every weight anyway.

The official networks run in float64, a reference free of float32 rounding; our float32 networks stay
within about 1e-6 of its range on these weights, the test allows 1e-4.

Before writing, the official networks' state_dict layouts are checked against the key lists in
tests/data, which the layout tests use.

Output ``coco_zoo.npz``: ``crops`` float16 (2, 3, 256, 192) normalised crops (values exact in float16),
and per preset a float32 (2, 17, 64, 48) array of raw heatmaps.
"""

from __future__ import annotations

import importlib
import math
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alphapose.pose.models.hrnet import BasicBlock, HighResolutionModule
from alphapose.pose.models.resnet import Bottleneck
from alphapose.pose.presets import get_preset

OUTPUT = "coco_zoo.npz"
SEED = 15
CROPS_SHAPE = (2, 3, 256, 192)
CALIBRATION_SHAPE = (2, 3, 128, 96)  # the networks are fully convolutional; small keeps calibration quick
RESIDUAL_GAIN = 0.2
PIXEL_MEAN = (0.406, 0.457, 0.480)  # AlphaPose's per-channel (R, G, B) crop mean

DATA = Path(__file__).resolve().parents[1] / "data"

# preset -> (official config, official key list in tests/data)
MODELS: dict[str, tuple[str, str]] = {
    "fastpose_duc_res152_coco": (
        "configs/coco/resnet/256x192_res152_lr1e-3_1x-duc.yaml",
        "256x192_res152_lr1e-3_1x-duc_coco_keys.txt",
    ),
    "fastpose_duc_res50_coco": (
        "configs/coco/resnet/256x192_res50_lr1e-3_1x-duc.yaml",
        "256x192_res50_lr1e-3_1x-duc_coco_keys.txt",
    ),
    "hrnet_w32_coco": ("configs/coco/hrnet/256x192_w32_lr1e-3.yaml", "256x192_w32_lr1e-3_coco_keys.txt"),
}

_PACKAGE = "_official_alphapose_models"


def seeded_state_dict(preset_name: str) -> dict[str, torch.Tensor]:
    """The preset's checkpoint (official keys, float32) from a fixed seed, whatever the machine or threads.

    Not the synthetic weights writer's networks: it calibrates batch norms with a float32 forward pass, and
    its random 152-layer network amplifies rounding so much that the calibrated statistics, and then the
    heatmaps, change with the thread count. Here every value is drawn in float64 from one generator, the
    last batch norm of each residual branch (and of each HRNet fuse term) is scaled by
    ``RESIDUAL_GAIN`` so the deep networks stay well-conditioned, and the running statistics come from a
    float64 pass over a seeded calibration batch, so float32 rounding can no longer decide the result.
    """
    generator = torch.Generator().manual_seed(SEED)
    model = get_preset(preset_name).build().double()
    damped = _residual_branch_ends(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.weight.normal_(0.0, math.sqrt(2.0 / module.weight[0].numel()), generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                if module in damped:
                    module.weight.mul_(RESIDUAL_GAIN)
        calibration = torch.rand(CALIBRATION_SHAPE, generator=generator, dtype=torch.float64)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average: after one batch, exactly its statistics
        model.train()(calibration - torch.tensor(PIXEL_MEAN, dtype=torch.float64)[:, None, None])
    return {
        key: value.float() if value.is_floating_point() else value
        for key, value in model.state_dict().items()
    }


def _residual_branch_ends(model: nn.Module) -> set[nn.Module]:
    """Batch norms whose output is added to another path: a block's last norm, an HRNet fuse term's last."""
    ends: set[nn.Module] = set()
    for module in model.modules():
        if isinstance(module, Bottleneck):
            ends.add(module.bn3)
        elif isinstance(module, BasicBlock):
            ends.add(module.bn2)
        elif isinstance(module, HighResolutionModule):
            for term in (term for terms in module.fuse_layers for term in terms):
                norms = [m for m in term.modules() if isinstance(m, nn.BatchNorm2d)]
                ends.update(norms[-1:])
    return ends


def golden_crops() -> torch.Tensor:
    """Two normalised crops (pixel / 255 - mean), smooth blobs over ramps and fine noise; exact in float16."""
    generator = torch.Generator().manual_seed(SEED)
    _, channels, height, width = CROPS_SHAPE
    coarse = torch.rand(1, channels, height // 16, width // 16, generator=generator)
    blobs = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    ramp = torch.linspace(0, 1, height)[:, None] * torch.linspace(1, 0, width)[None, :]
    smooth = (0.6 * blobs + 0.4 * ramp).clamp(0, 1)
    noise = torch.rand(1, channels, height, width, generator=generator)
    pixels = torch.cat([smooth, noise])
    crops = pixels - torch.tensor(PIXEL_MEAN)[:, None, None]
    return crops.half().float()


class _AttrDict(dict):
    """The config access the official constructors use: ``cfg['KEY']`` and ``cfg.KEY``."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _attr_dict(value: object) -> object:
    if isinstance(value, dict):
        return _AttrDict({key: _attr_dict(item) for key, item in value.items()})
    return value


class _Registry:
    """Stand-in for the official ``SPPE`` registry: the decorator leaves the class as it is."""

    @staticmethod
    def register_module(cls: type) -> type:
        return cls


@contextmanager
def _official_models(official: Path) -> Iterator[Callable[[str], type]]:
    """Official model classes by ``MODEL.TYPE`` name, imported with the stand-ins described above."""
    root = types.ModuleType(_PACKAGE)
    root.__path__ = [str(official / "alphapose" / "models")]
    builder = types.ModuleType(f"{_PACKAGE}.builder")
    builder.SPPE = _Registry()
    saved = {name: module for name, module in sys.modules.items() if name.startswith(_PACKAGE)}
    sys.modules[_PACKAGE] = root
    sys.modules[f"{_PACKAGE}.builder"] = builder
    no_imagenet = mock.patch.multiple(
        "torchvision.models",
        resnet50=lambda pretrained=False: nn.Module(),
        resnet152=lambda pretrained=False: nn.Module(),
    )
    try:
        modules = [importlib.import_module(f"{_PACKAGE}.{name}") for name in ("fastpose_duc", "hrnet")]
        with no_imagenet:
            yield lambda type_name: next(getattr(m, type_name) for m in modules if hasattr(m, type_name))
    finally:
        for name in [name for name in sys.modules if name.startswith(_PACKAGE)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _build_official(classes: Callable[[str], type], config: Path) -> nn.Module:
    """The network the official ``builder.build_sppe(cfg.MODEL, preset_cfg=cfg.DATA_PRESET)`` makes."""
    import yaml  # only generating needs it; the tests import this module for seeded_state_dict

    cfg = _attr_dict(yaml.safe_load(config.read_text()))
    kwargs = dict(cfg["MODEL"])
    network = classes(kwargs.pop("TYPE"))
    return network(PRESET=cfg["DATA_PRESET"], **kwargs)


def _check_key_list(model: nn.Module, key_file: str) -> None:
    rows = [line.split("\t")[:2] for line in (DATA / key_file).read_text().splitlines()]
    actual = [[key, str(tuple(value.shape))] for key, value in model.state_dict().items()]
    if actual != rows:
        raise RuntimeError(f"tests/data/{key_file} does not list the official network's state_dict")


def generate(official: Path, out: Path) -> list[Path]:
    """Run the official networks on the seeded checkpoints; write ``out/coco_zoo.npz`` (the float64
    heatmaps, and the condition of each draw: tests/golden/conditioning.py)."""
    from tests.golden.conditioning import accept, condition

    out.mkdir(parents=True, exist_ok=True)
    crops = golden_crops()
    arrays: dict[str, np.ndarray] = {"crops": crops.half().numpy()}
    with _official_models(official) as classes:
        for preset_name, (config, key_file) in MODELS.items():
            model = _build_official(classes, official / config).eval()
            _check_key_list(model, key_file)
            model.load_state_dict(seeded_state_dict(preset_name), strict=True)
            with torch.no_grad():
                float32 = model.float()(crops.float()).numpy()
                float64 = model.double()(crops.double()).numpy()
            arrays[preset_name] = float64.astype(np.float32)
            arrays[f"{preset_name}_condition"] = np.array(accept(condition(float32, float64), preset_name))
    path = out / OUTPUT
    np.savez_compressed(path, **arrays)
    return [path]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    print("\n".join(str(p) for p in generate(args.official, args.out)))
