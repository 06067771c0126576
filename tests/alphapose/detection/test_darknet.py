"""YOLOv3-SPP: official layout and key names, darknet .weights IO, and the YOLO decoding."""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from repo_paths import GOLDEN_DATA
from torch import nn

from alphapose.detection.darknet import (
    DARKNET_WEIGHTS_BYTES,
    YOLOV3_SPP,
    Conv,
    MaxPool,
    MaxPoolStride1,
    Route,
    Shortcut,
    Upsample,
    Yolo,
    YoloLayer,
    YoloV3SPP,
    read_darknet_weights,
    write_darknet_weights,
)
from alphapose.errors import WeightsError

# Recorded from the official Darknet by tests/golden/make_golden.py (gen_yolov3.py); the network's outputs are
# checked against the official ones in test_golden_yolov3.py.
KEYS_FILE = GOLDEN_DATA / "keys" / "darknet_keys.txt"
HEADS = (88, 100, 112)  # the linear 1x1 convs that feed the YOLO layers
COCO_ANCHORS = [
    (10, 13),
    (16, 30),
    (33, 23),
    (30, 61),
    (62, 45),
    (59, 119),
    (116, 90),
    (156, 198),
    (373, 326),
]


def official_keys() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in KEYS_FILE.read_text().splitlines():
        name, shape = line.split("\t")[:2]
        rows.append((name, tuple(int(d) for d in shape.strip("()").split(",") if d.strip())))
    return rows


def meta_model(input_size: int) -> YoloV3SPP:
    with torch.device("meta"):
        return YoloV3SPP(input_size)


def stored_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def set_heads(model: YoloV3SPP, attrs: dict[int, float], default: float = -30.0) -> None:
    """Zero the head convs' weights so each head outputs its bias at every cell: attribute -> raw value."""
    with torch.no_grad():
        for index in HEADS:
            conv = model.module_list[index][0]
            conv.weight.zero_()
            bias = conv.bias.view(3, 85)
            bias.fill_(default)
            for attr, value in attrs.items():
                bias[:, attr] = value


@pytest.mark.parametrize("input_size", [608, 320])
def test_state_dict_keys_and_shapes_are_official(input_size: int) -> None:
    model = meta_model(input_size)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == official_keys()


def test_layer_table_follows_the_cfg() -> None:
    counts = Counter(type(spec) for spec in YOLOV3_SPP)
    assert counts == {Conv: 76, Shortcut: 23, Route: 7, MaxPool: 3, Upsample: 2, Yolo: 3}
    routes = {i: spec.layers for i, spec in enumerate(YOLOV3_SPP) if isinstance(spec, Route)}
    assert routes == {
        79: (-2,),
        81: (-4,),
        83: (-1, -3, -5, -6),
        90: (-4,),
        93: (-1, 61),
        102: (-4,),
        105: (-1, 36),
    }
    assert [i for i, s in enumerate(YOLOV3_SPP) if isinstance(s, Upsample)] == [92, 104]
    assert [(i, s.size) for i, s in enumerate(YOLOV3_SPP) if isinstance(s, MaxPool)] == [
        (78, 5),
        (80, 9),
        (82, 13),
    ]
    heads = [
        (i, s.filters, s.batch_norm) for i, s in enumerate(YOLOV3_SPP) if isinstance(s, Conv) and s.size == 1
    ]
    assert [h for h in heads if not h[2]] == [(88, 255, False), (100, 255, False), (112, 255, False)]


def test_yolo_layers_use_cfg_anchors_and_strides() -> None:
    model = meta_model(608)
    layers = [(i, m) for i, block in enumerate(model.module_list) for m in block if isinstance(m, YoloLayer)]
    assert [i for i, _ in layers] == [89, 101, 113]
    assert [layer.anchors for _, layer in layers] == [
        tuple(COCO_ANCHORS[6:9]),
        tuple(COCO_ANCHORS[3:6]),
        tuple(COCO_ANCHORS[0:3]),
    ]
    assert [layer.stride for _, layer in layers] == [32, 16, 8]
    pools = [m for block in model.module_list for m in block if isinstance(m, MaxPoolStride1)]
    assert [p.kernel_size for p in pools] == [5, 9, 13]
    activations = [m for block in model.module_list for m in block if isinstance(m, nn.LeakyReLU)]
    assert len(activations) == 73 and {m.negative_slope for m in activations} == {0.1}


@pytest.mark.parametrize("size", [0, 600, 610, -32])
def test_input_size_must_be_a_multiple_of_32(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        YoloV3SPP(size)


def test_forward_rejects_an_input_of_another_size() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\)"):
        YoloV3SPP(64)(torch.zeros(1, 3, 96, 96))


@pytest.mark.parametrize(("input_size", "rows"), [(608, 22743), (320, 6300), (64, 252)])
def test_output_row_count(input_size: int, rows: int) -> None:
    with torch.inference_mode():
        out = meta_model(input_size)(torch.zeros(2, 3, input_size, input_size, device="meta"))
    assert out.shape == (2, rows, 85)
    assert out.dtype == torch.float32


def test_hand_set_heads_decode_to_known_boxes() -> None:
    """Zero head weights: each cell outputs the bias, so boxes follow from grid, anchors and strides alone."""
    model = YoloV3SPP(64).eval()
    # sigmoid(0) = 0.5 and exp(0) = 1 exactly; ty and th make y and h differ from x and w.
    set_heads(model, {0: 0.0, 1: math.log(3.0), 2: 0.0, 3: math.log(2.0), 4: 0.0, 5: 2.0})
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 64, 64))[0]
    row = 0
    for stride, anchors in ((32, COCO_ANCHORS[6:9]), (16, COCO_ANCHORS[3:6]), (8, COCO_ANCHORS[0:3])):
        grid = 64 // stride
        for gy in range(grid):
            for gx in range(grid):
                for anchor_w, anchor_h in anchors:
                    x, y, w, h = out[row, :4].tolist()
                    assert x == (gx + 0.5) * stride
                    assert w == anchor_w
                    assert y == pytest.approx((gy + 0.75) * stride, rel=1e-6)
                    assert h == pytest.approx(2 * anchor_h, rel=1e-6)
                    row += 1
    assert row == len(out)
    torch.testing.assert_close(out[:, 4], torch.full((row,), 0.5))
    torch.testing.assert_close(out[:, 5], torch.full((row,), 1 / (1 + math.exp(-2.0))))
    assert (out[:, 6:] < 1e-12).all()


def test_decode_matches_the_official_row_layout() -> None:
    """Random raw maps against the official recipe: (N, A*85, G*G) transposed to (N, G*G*A, 85)."""
    torch.manual_seed(1)
    anchors = COCO_ANCHORS[3:6]
    stride, grid, n = 16, 5, 2
    raw = torch.randn(n, 3 * 85, grid, grid)
    rows = raw.view(n, 3 * 85, grid * grid).transpose(1, 2).contiguous().view(n, grid * grid * 3, 85)
    xs, ys = np.meshgrid(np.arange(grid), np.arange(grid))
    cells = torch.tensor(np.stack([xs.ravel(), ys.ravel()], axis=1), dtype=torch.float32)
    offsets = cells.repeat(1, 3).view(-1, 2)
    scaled = torch.tensor([(w / stride, h / stride) for w, h in anchors]).repeat(grid * grid, 1)
    expected = rows.clone()
    expected[..., 0:2] = (torch.sigmoid(rows[..., 0:2]) + offsets) * stride
    expected[..., 2:4] = torch.exp(rows[..., 2:4]) * scaled * stride
    expected[..., 4:] = torch.sigmoid(rows[..., 4:])
    assert torch.equal(YoloLayer(anchors, stride)(raw), expected)


def test_grid_tensors_are_cached_and_usable_outside_inference_mode() -> None:
    layer = YoloLayer(COCO_ANCHORS[0:3], 8)
    raw = torch.randn(1, 255, 4, 4)
    with torch.inference_mode():
        layer(raw)
    cached = layer._grid(4, raw.device, torch.float32)
    assert layer._grid(4, raw.device, torch.float32)[0] is cached[0]
    assert layer._grid(4, raw.device, torch.float64)[0] is not cached[0]
    assert layer._grid(6, raw.device, torch.float32)[0].shape == (6 * 6 * 3, 2)
    # built under inference_mode, then used by autograd: must not be an inference tensor
    raw.requires_grad_(True)
    layer(raw).sum().backward()
    assert raw.grad is not None


def test_spp_max_pool_pads_with_zeros() -> None:
    x = -1.0 - torch.arange(36, dtype=torch.float32).view(1, 1, 6, 6)
    out = MaxPoolStride1(5)(x)
    assert out.shape == x.shape
    # windows reaching past the border see the zero padding; only the 2x2 centre lies fully inside
    expected = torch.zeros(6, 6)
    expected[2:4, 2:4] = torch.tensor([[-1.0, -2.0], [-7.0, -8.0]])
    assert torch.equal(out[0, 0], expected)


def test_autocast_output_is_float32() -> None:
    model = YoloV3SPP(32).eval()
    set_heads(model, {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0, 4: 1.0, 5: 3.0})
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.float16):
            mixed = model(x)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, rtol=1e-2, atol=1e-2)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A .weights file of a model whose every stored value is distinct random data."""
    generator = torch.Generator().manual_seed(2)
    model = YoloV3SPP(64)
    with torch.no_grad():
        for tensor in stored_tensors(model).values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
    path = tmp_path_factory.mktemp("darknet") / "yolov3-spp.weights"
    write_darknet_weights(model, path, seen=2**33 + 5)
    return path, {k: v.clone() for k, v in stored_tensors(model).items()}


def test_weights_size_is_the_official_size(written: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, tensors = written
    assert DARKNET_WEIGHTS_BYTES == 252_209_544
    assert 20 + 4 * sum(t.numel() for t in tensors.values()) == DARKNET_WEIGHTS_BYTES
    assert path.stat().st_size == DARKNET_WEIGHTS_BYTES


def test_weights_header_and_stream_order(written: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, tensors = written
    header = np.fromfile(path, dtype="<i4", count=3)
    seen = np.fromfile(path, dtype="<i8", count=1, offset=12)
    assert header.tolist() == [0, 2, 0] and seen.tolist() == [2**33 + 5]
    floats = torch.from_numpy(np.fromfile(path, dtype="<f4", offset=20))
    first = [
        tensors[f"module_list.0.batch_norm_0.{n}"] for n in ("bias", "weight", "running_mean", "running_var")
    ]
    first.append(tensors["module_list.0.conv_0.weight"].flatten())
    assert torch.equal(floats[: 4 * 32 + 864], torch.cat(first))
    last = torch.cat(
        [tensors["module_list.112.conv_112.bias"], tensors["module_list.112.conv_112.weight"].flatten()]
    )
    assert torch.equal(floats[-len(last) :], last)


def test_weights_round_trip_is_bit_exact_at_any_input_size(
    written: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, tensors = written
    model = YoloV3SPP(608)
    read_darknet_weights(model, path)
    loaded = stored_tensors(model)
    assert loaded.keys() == tensors.keys()
    mismatched = [k for k in tensors if not torch.equal(loaded[k], tensors[k])]
    assert mismatched == []


@pytest.mark.parametrize(("delta", "verdict"), [(-4, "4 bytes short"), (4, "4 bytes too long")])
def test_weights_of_the_wrong_length_are_refused(
    written: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, delta: int, verdict: str
) -> None:
    source, _ = written
    path = tmp_path / "bad.weights"
    shutil.copyfile(source, path)
    os.truncate(path, DARKNET_WEIGHTS_BYTES + delta)  # extending appends zero bytes
    model = YoloV3SPP(64)
    before = model.module_list[0][0].weight.clone()
    with pytest.raises(WeightsError) as error:
        read_darknet_weights(model, path)
    message = str(error.value)
    assert str(path) in message
    assert (
        f"{DARKNET_WEIGHTS_BYTES + delta:,} bytes" in message
        and f"{DARKNET_WEIGHTS_BYTES:,} bytes" in message
    )
    assert f"{63_052_381 + delta // 4:,} float32 values" in message and "63,052,381 float32 values" in message
    assert verdict in message
    assert torch.equal(model.module_list[0][0].weight, before)  # nothing was loaded


def test_missing_weights_file_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"missing\.weights"):
        read_darknet_weights(YoloV3SPP(64), tmp_path / "missing.weights")
