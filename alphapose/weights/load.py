"""Load the official weights into our networks, strictly and with errors a person can act on.

``fold_batch_norm=True`` gives the inference form of a network: the official weights are loaded and
checked first, then every batch norm is folded into its convolution (see :mod:`alphapose.engines.fuse`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path

import torch
from torch import nn

from alphapose.detection.detectors import DETECTORS, detector_for_file, get_detector
from alphapose.detection.person_detector import FAMILIES
from alphapose.engines.fuse import fold_batch_norms
from alphapose.errors import WeightsError
from alphapose.pose.presets import PRESETS, PosePreset, get_preset
from alphapose.weights.strict import load_checkpoint, load_strictly, network_shapes, other_fit_hint


def load_pose_model(
    preset: str | PosePreset,
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    *,
    fold_batch_norm: bool = False,
) -> nn.Module:
    """The preset's network with an official checkpoint loaded, in eval mode on ``device``.

    Input (N, 3, 256, 192) normalised crops, output heatmaps (N, K, 64, 48). The checkpoint is read with
    ``weights_only=True`` (no code runs from the file) and must match the preset key for key
    (:func:`alphapose.weights.strict.load_strictly`; a file of another preset is refused naming it).
    ``fold_batch_norm`` folds the batch norms after the strict load: same outputs to float rounding,
    faster, but the state_dict no longer is the checkpoint's.
    """
    preset = preset if isinstance(preset, PosePreset) else get_preset(preset)
    state = read_state_dict(checkpoint)
    candidates = {name: partial(expected_shapes, name) for name in PRESETS if name != preset.name}

    hint = other_fit_hint(
        candidates,
        named=lambda fits: "preset " + " / ".join(repr(f) for f in fits),
        advice=lambda _: "choose that preset instead",
        none="No other preset fits this file either.",
    )
    model = load_strictly(
        preset.build,
        state,
        source=checkpoint,
        target=f"preset {preset.name!r}",
        expected=expected_shapes(preset.name),
        hint=hint,
    )
    if fold_batch_norm:
        fold_batch_norms(model)
    return model.to(device)


def load_detector(
    weights: str | Path,
    input_size: int | None = None,
    device: str | torch.device = "cpu",
    *,
    detector: str | None = None,
    fold_batch_norm: bool = False,
) -> nn.Module:
    """The detector whose official weights file this is, loaded strictly, in eval mode on ``device``.

    The family is recognised from the official file name (``yolov3-spp.weights``, ...; see
    :mod:`alphapose.detection.detectors`), or named by ``detector`` for a file under another name.
    ``input_size`` defaults to the detector's official one. The network takes that family's official
    input and returns its raw predictions: for YOLOv3-SPP (N, 3, S, S) letterboxed RGB in [0, 1] in,
    (N, boxes, 85) out; for YOLOX (N, 3, S, S) BGR in 0..255 pasted top-left on grey in, decoded
    (N, boxes, 85) out. ``fold_batch_norm`` as in :func:`load_pose_model`.
    """
    path = Path(weights)
    spec = get_detector(detector) if detector else detector_for_file(path.name)
    if spec is None:
        known = ", ".join(d.weights.name for d in DETECTORS.values())
        raise WeightsError(f"{path}: not the name of an official detector weights file ({known})")
    model = FAMILIES[spec.family].load(path, input_size or spec.input_size, spec)
    if fold_batch_norm:
        fold_batch_norms(model)
    return model.to(device)


def read_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` checkpoint as the official training script saves it."""
    path = Path(checkpoint)
    state = load_checkpoint(path, "pose checkpoint")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a plain state_dict of tensors (got {type(state).__name__})")
    return dict(state)


@cache
def expected_shapes(preset_name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a preset's state_dict."""
    return network_shapes(get_preset(preset_name).build)
