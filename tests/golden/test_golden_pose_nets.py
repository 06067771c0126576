"""Every preset's network against heatmaps recorded from the official model classes (tests/golden).

The seeded checkpoints are rebuilt here in the official format and loaded by our loader, plain and in the
production form (batch norms folded, channels-last); the fixture holds what the official networks computed
from the same files and pixels (tests/golden/gen_pose_nets.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from repo_paths import GOLDEN_DATA

from alphapose.pose.transforms import normalize_crop
from alphapose.weights.load import load_pose_model
from tests.golden import conditioning, seeded
from tests.golden.gen_pose_nets import FIXTURE, PRESET_CONFIGS


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DATA / FIXTURE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("golden_pose")


def test_the_inputs_are_normalised_as_the_official_transform(golden: dict[str, np.ndarray]) -> None:
    """The fixture's pixels pass through our normalize_crop; spot values pinned to the official means."""
    batch = np.stack([normalize_crop(p) for p in golden["pixels"]])
    pixel = golden["pixels"][0, 100, 50].astype(np.float32) / np.float32(255)
    expected = pixel - np.array([0.406, 0.457, 0.480], dtype=np.float32)  # R, G, B (simple_transform.py)
    np.testing.assert_array_equal(batch[0, :, 100, 50], expected)


# The default preset runs in every test run; the others build a network each (seconds): slow cases.
PRESETS = [
    pytest.param(name, marks=() if name == "fastpose_res50_coco" else pytest.mark.slow)
    for name in PRESET_CONFIGS
]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("fold", [False, True], ids=["plain", "folded"])
def test_heatmaps_match_the_official_network(
    preset: str, fold: bool, golden: dict[str, np.ndarray], checkpoints: Path
) -> None:
    path = checkpoints / f"{preset}.pth"
    if not path.exists():
        seeded.write_pose_checkpoint(preset, checkpoints).rename(path)
    model = load_pose_model(preset, path, fold_batch_norm=fold)
    if fold:
        model = model.to(memory_format=torch.channels_last)
    batch = torch.from_numpy(np.stack([normalize_crop(p) for p in golden["pixels"]]))
    with torch.inference_mode():
        heatmaps = model(batch).numpy()
    expected = golden[preset]
    assert heatmaps.shape == expected.shape
    # the tolerance of the draw's recorded condition (tests/golden/conditioning.py); a change of layout,
    # normalisation or head moves heatmaps by more than 1e-2 of their range
    tolerance = conditioning.tolerance(golden[f"{preset}_condition"], np.abs(expected).max())
    np.testing.assert_allclose(heatmaps, expected, rtol=0, atol=tolerance)
