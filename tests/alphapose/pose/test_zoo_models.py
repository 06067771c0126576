"""FastPose-DUC (SE-ResNet-152, unshuffle SE-ResNet-50) and HRNet-W32: official checkpoint layout, the
pixel-unshuffle channel order, and the fast paths (folded batch norms, channels-last) on each network.

The key lists in tests/data are the official networks' ``state_dict`` (key, shape), built from
configs/coco/resnet/256x192_res152_lr1e-3_1x-duc.yaml, configs/coco/resnet/256x192_res50_lr1e-3_1x-duc.yaml
and configs/coco/hrnet/256x192_w32_lr1e-3.yaml of AlphaPose c60106d; tests/golden/gen_coco_zoo.py checks
them against the official classes whenever the golden fixtures are regenerated.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from repo_paths import TEST_DATA
from torch import nn

from alphapose.detection.detectors import DEFAULT_DETECTOR, get_detector
from alphapose.engines.fuse import fold_batch_norms
from alphapose.pipeline import PosePipeline
from alphapose.pose.models.fastpose_duc import (
    FastPoseDUC,
    duc_stage,
    fastpose_duc_res50_unshuffle,
    fastpose_duc_res152,
)
from alphapose.pose.models.hrnet import HighResolutionModule, HRNet, hrnet_w32
from alphapose.pose.models.resnet import SELayer, resnet152
from alphapose.pose.models.shuffle_resnet import UnshuffleConv, shuffle_resnet50
from alphapose.pose.presets import get_preset
from tools.synthetic_weights import synthetic_pose_model

DATA = TEST_DATA
SMALL_CROPS = (2, 3, 128, 96)  # fully convolutional networks: small inputs keep the tests fast

NETWORKS: list[tuple[Callable[[int], nn.Module], str]] = [
    (fastpose_duc_res152, "256x192_res152_lr1e-3_1x-duc_coco_keys.txt"),
    (fastpose_duc_res50_unshuffle, "256x192_res50_lr1e-3_1x-duc_coco_keys.txt"),
    (hrnet_w32, "256x192_w32_lr1e-3_coco_keys.txt"),
]
NETWORK_IDS = ["res152_duc", "res50_unshuffle_duc", "hrnet_w32"]


def _key_list(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """``key<TAB>(shape)`` lines of an official key list."""
    rows = (line.split("\t") for line in (DATA / name).read_text().splitlines())
    return [(fields[0], tuple(ast.literal_eval(fields[1]))) for fields in rows]


def _on_meta(builder: Callable[[int], nn.Module], num_joints: int = 17) -> nn.Module:
    with torch.device("meta"):
        return builder(num_joints)


def _seeded(builder: Callable[[int], nn.Module], seed: int) -> nn.Module:
    """Reproducible random weights, batch norms far from the identity (folding has something to get wrong)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = builder(17).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.3, 3.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
    return model


def _assert_same_function(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding accumulated over a deep network."""
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=2e-5 * scale)


@pytest.mark.parametrize(("builder", "key_file"), NETWORKS, ids=NETWORK_IDS)
def test_state_dict_matches_official_layout(builder: Callable[[int], nn.Module], key_file: str) -> None:
    state = _on_meta(builder).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == _key_list(key_file)


def test_num_joints_sets_only_the_output_layer() -> None:
    for builder, head in ((fastpose_duc_res152, "conv_out"), (hrnet_w32, "final_layer")):
        coco, halpe = _on_meta(builder, 17).state_dict(), _on_meta(builder, 26).state_dict()
        differing = {k for k in coco if coco[k].shape != halpe[k].shape}
        assert differing == {f"{head}.weight", f"{head}.bias"}


def test_unshuffle_conv_uses_the_official_channel_order() -> None:
    """Input pixel (y*2 + i, x*2 + j) of channel c goes to channel c*4 + i*2 + j (official view/permute)."""
    layer = UnshuffleConv(3, 5)
    x = torch.randn(2, 3, 6, 8)
    unshuffled = layer[0](x)
    assert unshuffled.shape == (2, 12, 3, 4)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(
                    unshuffled[:, c * 4 + i * 2 + j], x[:, c, i::2, j::2], rtol=0, atol=0
                )
    assert layer[1].weight.shape == (5, 12, 3, 3) and layer[1].stride == (1, 1)


def test_unshuffle_trunk_replaces_only_the_strided_convolutions() -> None:
    trunk = _on_meta(lambda _: shuffle_resnet50())
    unshuffled = [name for name, module in trunk.named_modules() if isinstance(module, UnshuffleConv)]
    assert unshuffled == ["layer2.0.conv2", "layer3.0.conv2", "layer4.0.conv2"]
    strided = [n for n, m in trunk.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert strided == ["conv1", "layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    se = [name for name, module in trunk.named_modules() if isinstance(module, SELayer)]
    assert se == ["layer1.0.se", "layer2.0.se", "layer3.0.se", "layer4.0.se"]


def test_se_resnet152_has_se_in_the_first_block_of_each_stage() -> None:
    trunk = _on_meta(lambda _: resnet152(squeeze_excitation=True))
    assert [len(stage) for stage in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)] == [3, 8, 36, 3]
    se = [name for name, module in trunk.named_modules() if isinstance(module, SELayer)]
    assert se == ["layer1.0.se", "layer2.0.se", "layer3.0.se", "layer4.0.se"]


def test_duc_stage_shuffles_first_and_keeps_the_official_indices() -> None:
    stage = duc_stage(2048, 1024, convs=4)
    assert isinstance(stage[0], nn.PixelShuffle)
    convs = {index: tuple(m.weight.shape[:2]) for index, m in enumerate(stage) if isinstance(m, nn.Conv2d)}
    assert convs == {1: (512, 512), 4: (512, 512), 7: (512, 512), 10: (1024, 512)}
    assert stage(torch.randn(1, 2048, 2, 3)).shape == (1, 1024, 4, 6)
    with pytest.raises(ValueError, match="convs >= 1"):
        duc_stage(2048, 1024, convs=0)
    with pytest.raises(ValueError, match="three DUC stages"):
        FastPoseDUC(resnet152(), 17, stage_convs=(4, 2))


def test_hrnet_last_module_keeps_only_the_finest_branch() -> None:
    model = _on_meta(hrnet_w32)
    assert isinstance(model, HRNet)
    last = model.stage4[-1]
    assert isinstance(last, HighResolutionModule) and len(last.fuse_layers) == 1
    assert all(len(module.fuse_layers) == 4 for module in model.stage4[:-1])
    with pytest.raises(ValueError, match="at least two branches"):
        HighResolutionModule((32,))


@pytest.mark.parametrize(("builder", "key_file"), NETWORKS, ids=NETWORK_IDS)
def test_heatmaps_are_a_quarter_of_the_input(builder: Callable[[int], nn.Module], key_file: str) -> None:
    model = _seeded(builder, seed=1)
    with torch.inference_mode():
        out = model(torch.rand(SMALL_CROPS) - 0.45)
    assert out.shape == (2, 17, 32, 24)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("builder", "key_file"), NETWORKS, ids=NETWORK_IDS)
def test_folded_and_channels_last_networks_give_the_same_heatmaps(
    builder: Callable[[int], nn.Module], key_file: str
) -> None:
    model = _seeded(builder, seed=2)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == norms  # every norm follows a convolution, the unshuffled ones too
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    fast = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    crops = torch.rand(SMALL_CROPS, generator=torch.Generator().manual_seed(3)) - 0.45
    with torch.inference_mode():
        expected = model(crops)
        _assert_same_function(folded(crops), expected)
        _assert_same_function(fast(crops), expected)
        _assert_same_function(fast(crops.contiguous(memory_format=torch.channels_last)), expected)


def test_folding_reaches_the_convolution_inside_an_unshuffle_conv() -> None:
    block = _seeded(lambda _: shuffle_resnet50(), seed=4).layer2[0]
    folded = copy.deepcopy(block)
    assert fold_batch_norms(folded) == 4  # bn1, bn2 (after the UnshuffleConv), bn3, downsample.1
    assert isinstance(folded.bn2, nn.Identity) and folded.conv2[1].bias is not None
    x = torch.randn(2, 256, 16, 12)
    with torch.inference_mode():
        _assert_same_function(folded(x), block(x))


@pytest.mark.slow
def test_hrnet_preset_runs_in_the_pipeline(weights_dir: Path, tmp_path: Path) -> None:
    """The presets plug into the pipeline like the others (HRNet: the cheapest of the three to run)."""
    preset = get_preset("hrnet_w32_coco")
    detector = get_detector(DEFAULT_DETECTOR).weights.name
    (tmp_path / detector).symlink_to(weights_dir / detector)
    model = synthetic_pose_model(preset.name, torch.Generator().manual_seed(0))
    torch.save(model.state_dict(), tmp_path / preset.checkpoint.name)
    pipeline = PosePipeline.from_weights_dir(tmp_path, preset=preset.name, device="cpu", detector_size=320)
    image = np.random.default_rng(5).integers(0, 256, (360, 480, 3), dtype=np.uint8)
    poses = pipeline.estimate(
        image, np.array([[40, 30, 200, 340], [250, 60, 420, 330]]), np.array([0.9, 0.8])
    )
    assert len(poses) == 2 and all(p.keypoints.shape == (17, 2) for p in poses)
