"""Strict loading of official-format checkpoints, and the errors a wrong file gets."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

from alphapose import load_detector, load_pose_model
from alphapose.errors import WeightsError
from alphapose.pose.presets import get_preset

DETECTOR_WEIGHTS = "yolov3-spp.weights"  # the official file name (alphapose/detection/detectors.py)


def test_official_layout_loads_and_gives_heatmaps(weights_dir: Path) -> None:
    preset = get_preset("fastpose_res50_halpe26")
    model = load_pose_model(preset.name, weights_dir / preset.checkpoint.name)
    assert not model.training
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 256, 192))
    assert out.shape == (2, 26, 64, 48)
    saved = torch.load(weights_dir / preset.checkpoint.name, weights_only=True)
    assert isinstance(saved, collections.OrderedDict)  # a plain state_dict, as the official files are
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_checkpoint_of_another_preset_names_the_preset_that_fits(weights_dir: Path) -> None:
    halpe = weights_dir / get_preset("fastpose_res50_halpe26").checkpoint.name
    with pytest.raises(WeightsError) as err:
        load_pose_model("fastpose_res50_coco", halpe)
    message = str(err.value)
    assert "conv_out.weight (26, 128, 3, 3) != (17, 128, 3, 3)" in message
    assert "'fastpose_res50_halpe26'" in message


def test_missing_and_unexpected_keys_are_named(weights_dir: Path, tmp_path: Path) -> None:
    state = torch.load(weights_dir / "fast_res50_256x192.pth", weights_only=True)
    state.pop("duc1.bn.running_var")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with pytest.raises(
        WeightsError, match=r"1 missing keys: duc1\.bn\.running_var; 1 unexpected keys: extra\.weight"
    ):
        load_pose_model("fastpose_res50_coco", path)


def test_dataparallel_prefix_gets_a_hint(weights_dir: Path, tmp_path: Path) -> None:
    state = torch.load(weights_dir / "fast_res50_256x192.pth", weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    with pytest.raises(WeightsError, match=r"'module\.' prefix"):
        load_pose_model("fastpose_res50_coco", path)


def test_truncated_checkpoint_is_a_clear_error(weights_dir: Path, tmp_path: Path) -> None:
    data = (weights_dir / "fast_res50_256x192.pth").read_bytes()
    path = tmp_path / "fast_res50_256x192.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_pose_model("fastpose_res50_coco", path)


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("code ran",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_pose_model("fastpose_res50_coco", path)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="pose checkpoint not found"):
        load_pose_model("fastpose_res50_coco", tmp_path / "nope.pth")
    with pytest.raises(WeightsError, match="detector weights not found"):
        load_detector(tmp_path / DETECTOR_WEIGHTS)


def test_unknown_preset_lists_the_valid_ones(weights_dir: Path) -> None:
    with pytest.raises(ValueError, match="fastpose_res50_coco"):
        load_pose_model("hrnet", weights_dir / "fast_res50_256x192.pth")


def test_detector_loads_at_smaller_input_sizes(weights_dir: Path) -> None:
    model = load_detector(weights_dir / DETECTOR_WEIGHTS, input_size=320)
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 320, 320))
    assert out.shape == (1, 3 * (10 * 10 + 20 * 20 + 40 * 40), 85)
