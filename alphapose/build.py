"""Load the official weights into our networks, strictly and with errors a person can act on."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch
from torch import nn

from alphapose.errors import WeightsError
from alphapose.models.darknet import YoloV3SPP, read_darknet_weights
from alphapose.presets import DETECTOR_INPUT_SIZE, PRESETS, PosePreset, get_preset

_SHOWN_KEYS = 5


def load_pose_model(
    preset: str | PosePreset, checkpoint: str | Path, device: str | torch.device = "cpu"
) -> nn.Module:
    """The preset's network with an official checkpoint loaded, in eval mode on ``device``.

    Input (N, 3, 256, 192) normalised crops, output heatmaps (N, K, 64, 48). The checkpoint is read with
    ``weights_only=True`` (no code runs from the file) and must match the preset key for key.
    """
    preset = preset if isinstance(preset, PosePreset) else get_preset(preset)
    state = read_state_dict(checkpoint)
    problems = describe_mismatch(expected_shapes(preset.name), state)
    if problems:
        hint = _fitting_presets_hint(state, preset.name)
        raise WeightsError(f"{checkpoint} does not fit preset {preset.name!r}: {problems}.{hint}")
    model = preset.build()
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def load_detector(
    weights: str | Path, input_size: int = DETECTOR_INPUT_SIZE, device: str | torch.device = "cpu"
) -> nn.Module:
    """YOLOv3-SPP with darknet ``.weights`` loaded, in eval mode.

    Input (N, 3, S, S) letterboxed RGB in [0, 1]; output the raw predictions (N, boxes, 85).
    """
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"detector weights not found: {path}")
    model = YoloV3SPP(input_size)
    read_darknet_weights(model, path)
    return model.to(device).eval()


def read_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` checkpoint as the official training script saves it."""
    path = Path(checkpoint)
    if not path.is_file():
        raise WeightsError(f"pose checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}"
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a plain state_dict of tensors (got {type(state).__name__})")
    return dict(state)


@cache
def expected_shapes(preset_name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a preset's state_dict, built on the meta device (no memory, no init cost)."""
    preset = get_preset(preset_name)
    with torch.device("meta"):
        model = preset.builder(preset.skeleton.num_keypoints)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def describe_mismatch(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor]) -> str:
    """Empty when ``state`` has exactly the expected keys and shapes, else an account of the differences."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            shown = ", ".join(items[:_SHOWN_KEYS]) + (
                f" (+{len(items) - _SHOWN_KEYS} more)" if len(items) > _SHOWN_KEYS else ""
            )
            parts.append(f"{len(items)} {label}: {shown}")
    if unexpected and all(k.startswith("module.") for k in state):
        parts.append(
            "the keys carry a 'module.' prefix (a DataParallel wrapper); save model.module.state_dict()"
        )
    return "; ".join(parts)


def _fitting_presets_hint(state: Mapping[str, torch.Tensor], tried: str) -> str:
    fits = [name for name in PRESETS if name != tried and not describe_mismatch(expected_shapes(name), state)]
    if not fits:
        return " No other preset fits this file either."
    return f" The file fits preset {' / '.join(repr(f) for f in fits)}: set ALPHAPOSE_PRESET accordingly."
