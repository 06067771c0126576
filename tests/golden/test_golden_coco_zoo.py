"""FastPose-DUC R152, FastPose-DUC R50-unshuffle and HRNet-W32 reproduce the official networks' heatmaps.

tests/golden/data/coco_zoo.npz holds what the official AlphaPose classes computed from seeded checkpoints
(tests/golden/gen_coco_zoo.py); here the same checkpoints, rebuilt from the seed and saved as ``.pth`` files,
go through ``load_pose_model``: as loaded, and folded + channels-last as the pipeline runs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from repo_paths import GOLDEN_DATA

from alphapose.pose.presets import get_preset
from alphapose.weights.load import load_pose_model
from tests.golden import conditioning
from tests.golden.gen_coco_zoo import MODELS, OUTPUT, seeded_state_dict

GOLDEN = GOLDEN_DATA / OUTPUT


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


def error(actual: torch.Tensor, expected: np.ndarray) -> float:
    """Largest absolute difference from the expected heatmaps."""
    reference = torch.from_numpy(expected)
    assert actual.shape == reference.shape
    return float((actual - reference).abs().max())


# The three heaviest networks (3 to 5 s each) run in make test-slow, to keep make test short.
HEAVY = {"fastpose_duc_res152_coco", "fastpose_duc_res50_coco", "hrnet_w32_coco"}


@pytest.mark.parametrize(
    "preset_name", [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name for name in MODELS]
)
def test_heatmaps_match_the_official_network(
    preset_name: str, golden: dict[str, np.ndarray], tmp_path: Path
) -> None:
    checkpoint = tmp_path / get_preset(preset_name).checkpoint.name
    torch.save(seeded_state_dict(preset_name), checkpoint)
    plain = load_pose_model(preset_name, checkpoint, "cpu")
    fast = load_pose_model(preset_name, checkpoint, "cpu", fold_batch_norm=True)
    checkpoint.unlink()  # up to 330 MB
    fast.to(memory_format=torch.channels_last)
    crops = torch.from_numpy(golden["crops"]).float()
    expected = golden[preset_name]
    # the official float64 heatmaps: a float32 network differs by about the recorded condition
    tolerance = conditioning.tolerance(golden[f"{preset_name}_condition"], np.abs(expected).max())
    with torch.inference_mode():
        assert error(plain(crops), expected) < tolerance
        assert error(fast(crops.contiguous(memory_format=torch.channels_last)), expected) < tolerance
