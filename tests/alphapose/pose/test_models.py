"""Pose networks: official checkpoint layout, SE placement, DCN sampling convention and head geometry."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from repo_paths import GOLDEN_DATA
from torch import nn

from alphapose.pose.models.fastpose import DUC, FastPose, fastpose_dcn_res50, fastpose_res50
from alphapose.pose.models.resnet import Bottleneck, DeformConv2d, SELayer, resnet50
from alphapose.pose.models.simplepose import simplepose_res50

# Key lists recorded from the official model classes by tests/golden/make_golden.py (gen_pose_nets.py);
# what the networks compute is checked against the official ones in test_golden_pose_nets.py.
DATA = GOLDEN_DATA / "keys"

OFFICIAL_LAYOUTS = [
    (fastpose_res50, 17, "fastpose_keys.txt"),
    (fastpose_res50, 26, "256x192_res50_lr1e-3_1x_halpe_26_keys.txt"),
    (simplepose_res50, 17, "256x192_res50_lr1e-3_1x-simple_coco_keys.txt"),
    (fastpose_dcn_res50, 17, "256x192_res50_lr1e-3_2x-dcn_coco_keys.txt"),
]


def read_key_list(path: Path) -> list[tuple[str, tuple[int, ...], str | None]]:
    """Parse ``key<TAB>(shape)[<TAB>dtype]`` lines."""
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        rows.append((fields[0], tuple(ast.literal_eval(fields[1])), fields[2] if len(fields) > 2 else None))
    return rows


def randomize_(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Load random but well-scaled weights and BN statistics (activations stay O(1)); return them."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if not value.is_floating_point():
            state[name] = torch.randint(0, 1000, value.shape, generator=gen, dtype=value.dtype)
            continue
        uniform = torch.rand(value.shape, generator=gen)
        normal = torch.randn(value.shape, generator=gen)
        if "conv2_offset" in name:
            # Fractional offsets of up to ~2 px, some reaching outside the feature map.
            state[name] = 0.02 * normal if name.endswith("weight") else 4 * uniform - 2
        elif name.endswith("running_var"):
            state[name] = 0.5 + uniform
        elif value.dim() > 1:
            fan_in = value[0].numel() if not name.startswith("deconv") else value.shape[0]
            state[name] = normal / math.sqrt(fan_in)
        elif name.endswith("weight"):
            state[name] = 0.5 + uniform
        else:
            state[name] = 0.1 * normal
    model.load_state_dict(state, strict=True)
    return state


@pytest.mark.parametrize(("builder", "num_joints", "key_file"), OFFICIAL_LAYOUTS)
def test_state_dict_matches_official_layout(
    builder: Callable[[int], nn.Module], num_joints: int, key_file: str
) -> None:
    expected = read_key_list(DATA / key_file)
    state = builder(num_joints).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == [(k, s) for k, s, _ in expected]
    for key, _, dtype in expected:
        if dtype is not None:
            assert str(state[key].dtype) == dtype, key


@pytest.mark.parametrize(
    "builder",
    [
        fastpose_res50,
        pytest.param(simplepose_res50, marks=pytest.mark.slow),
        pytest.param(fastpose_dcn_res50, marks=pytest.mark.slow),
    ],
)
def test_checkpoint_round_trip_with_weights_only_load(
    builder: Callable[[int], nn.Module], tmp_path: Path
) -> None:
    source = builder(17).eval()
    state = randomize_(source, seed=2)
    path = tmp_path / "checkpoint.pth"
    torch.save(source.state_dict(), path)

    target = builder(17).eval()
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        before = target(x)
        target.load_state_dict(torch.load(path, weights_only=True), strict=True)
        after, expected = target(x), source(x)
    assert torch.equal(after, expected)
    assert not torch.allclose(before, expected)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())


def _eval_bottleneck(squeeze_excitation: bool, deformable: bool = False, stride: int = 2) -> Bottleneck:
    downsample = nn.Sequential(nn.Conv2d(32, 64, 1, stride, bias=False), nn.BatchNorm2d(64))
    block = Bottleneck(
        32, 16, stride, downsample, squeeze_excitation=squeeze_excitation, deformable=deformable
    )
    randomize_(block, seed=3)
    return block.eval()


def _residual_branch(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    out = F.relu(block.bn1(block.conv1(x)))
    out = F.relu(block.bn2(block.conv2(out)))
    return block.bn3(block.conv3(out))


def test_se_gate_scales_residual_branch_before_the_add() -> None:
    block = _eval_bottleneck(squeeze_excitation=True)
    assert block.se is not None
    gate = 0.25
    with torch.no_grad():
        block.se.fc[2].weight.zero_()
        block.se.fc[2].bias.fill_(math.log(gate / (1 - gate)))
        x = torch.randn(2, 32, 12, 10)
        branch, shortcut = _residual_branch(block, x), block.downsample(x)
        out = block(x)
    torch.testing.assert_close(out, F.relu(gate * branch + shortcut), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out, F.relu(gate * (branch + shortcut)), atol=1e-3)


def test_se_only_in_first_block_of_each_stage() -> None:
    se_names = [n for n, m in resnet50(squeeze_excitation=True).named_modules() if isinstance(m, SELayer)]
    assert se_names == ["layer1.0.se", "layer2.0.se", "layer3.0.se", "layer4.0.se"]
    assert not any(isinstance(m, SELayer) for m in resnet50().modules())

    block = Bottleneck(64, 16)
    randomize_(block, seed=4)
    block.eval()
    x = torch.randn(1, 64, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(_residual_branch(block, x) + x))


@pytest.mark.parametrize("builder", [fastpose_res50, fastpose_dcn_res50, simplepose_res50])
def test_stride_sits_on_the_3x3_conv(builder: Callable[[int], nn.Module]) -> None:
    """Official trunks downsample in conv2 (not conv1, as ResNet v1 did): same keys, different numbers."""
    trunk = builder(17).preact
    assert (trunk.conv1.stride, trunk.conv1.padding, trunk.maxpool.stride) == ((2, 2), (3, 3), 2)
    for stage, stride in zip(
        (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4), (1, 2, 2, 2), strict=True
    ):
        for index, block in enumerate(stage):
            expected = stride if index == 0 else 1
            assert block.conv1.stride == (1, 1)
            assert block.conv2.stride == (expected, expected)
            if block.conv2_offset is not None:
                assert block.conv2_offset.stride == (expected, expected)
        assert stage[0].downsample[0].stride == (stride, stride)


def _plain_twin(block: Bottleneck) -> Bottleneck:
    """The same block with an ordinary 3x3 conv holding the deformable conv's weight."""
    twin = Bottleneck(32, 16, 2, nn.Sequential(nn.Conv2d(32, 64, 1, 2, bias=False), nn.BatchNorm2d(64)))
    state = {k: v for k, v in block.state_dict().items() if not k.startswith("conv2_offset")}
    twin.load_state_dict(state, strict=True)
    return twin.eval()


def test_deformable_block_with_zero_offsets_equals_plain_block() -> None:
    block = _eval_bottleneck(squeeze_excitation=False, deformable=True, stride=2)
    assert block.conv2_offset is not None
    with torch.no_grad():
        block.conv2_offset.weight.zero_()
        block.conv2_offset.bias.zero_()
        x = torch.randn(2, 32, 13, 11)
        out = block(x)
        expected = _plain_twin(block)(x)
    assert out.shape == (2, 64, 7, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_dcn_fastpose_with_zero_offsets_equals_fastpose() -> None:
    dcn = fastpose_dcn_res50(5).eval()
    state = randomize_(dcn, seed=5)
    for name, value in state.items():
        if "conv2_offset" in name:
            value.zero_()
    dcn.load_state_dict(state)
    plain = fastpose_res50(5).eval()
    plain.load_state_dict({k: v for k, v in state.items() if "conv2_offset" not in k}, strict=True)
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(dcn(x), plain(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("dy", "dx"), [(0.0, 1.0), (1.0, 0.0)])
def test_constant_offset_shifts_sampling_grid(dy: float, dx: float) -> None:
    """Offsets are (dy, dx) pairs per tap: +1 in x equals a plain conv on the input moved left by one."""
    block = _eval_bottleneck(squeeze_excitation=False, deformable=True, stride=1)
    assert block.conv2_offset is not None and isinstance(block.conv2, DeformConv2d)
    with torch.no_grad():
        block.conv2_offset.weight.zero_()
        block.conv2_offset.bias.copy_(torch.tensor([dy, dx]).repeat(9))
        t = torch.randn(1, 16, 9, 10)
        out = block.conv2(t, block.conv2_offset(t))
        shifted = torch.roll(t, shifts=(-int(dy), -int(dx)), dims=(2, 3))
        expected = F.conv2d(shifted, block.conv2.weight, padding=1)
    # Interior: every tap of the shifted conv reads real (not wrapped, not padded) input.
    torch.testing.assert_close(out[..., 1:-2, 1:-2], expected[..., 1:-2, 1:-2], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(
        out[..., 1:-2, 1:-2], F.conv2d(t, block.conv2.weight, padding=1)[..., 1:-2, 1:-2]
    )


def _reference_deform_conv(x: np.ndarray, offset: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """Naive DCN v1 with the official (mmdetection) sampling rule, padding 1.

    Tap (i, j) of output (y, x) samples input (y*s - 1 + i + dy, x*s - 1 + j + dx), dy at offset channel
    2*(3i+j), dx at the next; bilinear with out-of-map corners read as zero; zero if the point is at or
    beyond one pixel outside the map.
    """
    c_in, h, w = x.shape
    _, out_h, out_w = offset.shape
    out = np.zeros((weight.shape[0], out_h, out_w))
    for oy in range(out_h):
        for ox in range(out_w):
            cols = np.zeros((c_in, 3, 3))
            for i in range(3):
                for j in range(3):
                    py = oy * stride - 1 + i + offset[2 * (3 * i + j), oy, ox]
                    px = ox * stride - 1 + j + offset[2 * (3 * i + j) + 1, oy, ox]
                    if not (-1 < py < h and -1 < px < w):
                        continue
                    y0, x0 = math.floor(py), math.floor(px)
                    for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
                        if 0 <= yy < h and 0 <= xx < w:
                            cols[:, i, j] += (1 - abs(py - yy)) * (1 - abs(px - xx)) * x[:, yy, xx]
            out[:, oy, ox] = np.tensordot(weight, cols, axes=3)
    return out


@pytest.mark.parametrize("stride", [1, 2])
def test_deform_conv_matches_official_sampling_rule(stride: int) -> None:
    gen = torch.Generator().manual_seed(6)
    conv = DeformConv2d(3, 4, stride=stride)
    x = torch.randn(1, 3, 7, 6, generator=gen)
    out_h, out_w = (7 - 1) // stride + 1, (6 - 1) // stride + 1
    offset = 5 * torch.rand(1, 18, out_h, out_w, generator=gen) - 2.5
    with torch.no_grad():
        out = conv(x, offset)
    expected = _reference_deform_conv(
        x[0].double().numpy(), offset[0].double().numpy(), conv.weight.detach().double().numpy(), stride
    )
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_duc_head_by_hand() -> None:
    """3x3 conv (tap centre only, channel c = (c+1)*x), identity BN, ReLU, then 2x2 pixel shuffle."""
    duc = DUC(1, 4, upscale_factor=2).eval()
    with torch.no_grad():
        duc.conv.weight.zero_()
        duc.conv.weight[:, 0, 1, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])
        duc.bn.running_var.fill_(1 - duc.bn.eps)
        out = duc(torch.tensor([[[[1.0, 2.0], [3.0, -4.0]]]]))
    expected = torch.tensor(
        [
            [1.0, 2.0, 2.0, 4.0],
            [3.0, 4.0, 6.0, 8.0],
            [3.0, 6.0, 0.0, 0.0],
            [9.0, 12.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(out[0, 0], expected)


@pytest.mark.parametrize("builder", [fastpose_dcn_res50, simplepose_res50])
def test_channels_last_gives_same_heatmaps(builder: Callable[[int], nn.Module]) -> None:
    model = builder(17).eval()
    randomize_(model, seed=7)
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_fastpose_conv_dim_256_head() -> None:
    model = FastPose(resnet50(squeeze_excitation=True), 21, conv_dim=256)
    assert model.duc2.conv.weight.shape == (1024, 256, 3, 3)
    assert model.conv_out.weight.shape == (21, 256, 3, 3)
