"""YOLOv3-SPP, the person detector of AlphaPose, and the darknet ``.weights`` format it ships in.

The network is written as a layer table (one entry per block of the official ``yolov3-spp.cfg``, in the same
order) instead of a parsed cfg file. Module indices, module names and parameter shapes follow the official
pytorch port, so its state_dict keys (``module_list.{i}.conv_{i}.weight``,
``module_list.{i}.batch_norm_{i}.*``) and the order of tensors in the ``.weights`` stream are the
official ones.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphapose.errors import WeightsError

NUM_CLASSES = 80  # COCO classes; class 0 is "person"
NUM_ATTRS = 5 + NUM_CLASSES  # x, y, w, h, objectness, class scores
ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326),
)  # fmt: skip
DARKNET_HEADER_BYTES = 20  # int32 major, minor, revision; int64 images seen


@dataclass(frozen=True)
class Conv:
    """Convolution with "same" padding; batch norm + LeakyReLU(0.1), or a bias and no activation (heads)."""

    filters: int
    size: int
    stride: int = 1
    batch_norm: bool = True


@dataclass(frozen=True)
class Shortcut:
    """Residual sum of the previous layer and the layer ``offset`` back."""

    offset: int


@dataclass(frozen=True)
class Route:
    """Concatenation of earlier outputs along channels; negative indices are relative, others absolute."""

    layers: tuple[int, ...]


@dataclass(frozen=True)
class MaxPool:
    """Stride-1 max pool that keeps the spatial size (SPP)."""

    size: int


@dataclass(frozen=True)
class Upsample:
    """Nearest-neighbour upsampling by 2."""


@dataclass(frozen=True)
class Yolo:
    """Detection layer decoding the previous conv with the anchors picked by ``mask``."""

    mask: tuple[int, ...]


LayerSpec = Conv | Shortcut | Route | MaxPool | Upsample | Yolo


def _residual_stage(filters: int, blocks: int) -> list[LayerSpec]:
    """Darknet-53 stage: a stride-2 conv, then bottleneck blocks with a residual sum."""
    layers: list[LayerSpec] = [Conv(filters, 3, stride=2)]
    for _ in range(blocks):
        layers += [Conv(filters // 2, 1), Conv(filters, 3), Shortcut(-3)]
    return layers


def _spp() -> list[LayerSpec]:
    """Spatial pyramid pooling: pools of 5, 9 and 13 concatenated with their input (largest pool first)."""
    return [MaxPool(5), Route((-2,)), MaxPool(9), Route((-4,)), MaxPool(13), Route((-1, -3, -5, -6))]


def _output(mask: tuple[int, ...]) -> list[LayerSpec]:
    return [Conv(len(mask) * NUM_ATTRS, 1, batch_norm=False), Yolo(mask)]


def _upsample_head(filters: int, skip: int, mask: tuple[int, ...]) -> list[LayerSpec]:
    """Finer head: branch off 4 layers before the previous YOLO layer, upsample, join a backbone skip."""
    layers: list[LayerSpec] = [Route((-4,)), Conv(filters, 1), Upsample(), Route((-1, skip))]
    for _ in range(3):
        layers += [Conv(filters, 1), Conv(2 * filters, 3)]
    return layers + _output(mask)


# 36 and 61 (the cfg's absolute routes) are the last layers of the stride-8 and stride-16 backbone stages.
YOLOV3_SPP: tuple[LayerSpec, ...] = (
    Conv(32, 3),
    *_residual_stage(64, 1),
    *_residual_stage(128, 2),
    *_residual_stage(256, 8),
    *_residual_stage(512, 8),
    *_residual_stage(1024, 4),
    Conv(512, 1),
    Conv(1024, 3),
    Conv(512, 1),
    *_spp(),
    Conv(512, 1),
    Conv(1024, 3),
    Conv(512, 1),
    Conv(1024, 3),
    *_output((6, 7, 8)),
    *_upsample_head(256, skip=61, mask=(3, 4, 5)),
    *_upsample_head(128, skip=36, mask=(0, 1, 2)),
)


def _sources(index: int, spec: LayerSpec) -> tuple[int, ...]:
    """Absolute indices of the earlier outputs a layer reads (beyond its direct input)."""
    if isinstance(spec, Route):
        return tuple(layer if layer >= 0 else index + layer for layer in spec.layers)
    if isinstance(spec, Shortcut):
        return (index - 1, index + spec.offset)
    return ()


def _shapes(layers: Sequence[LayerSpec]) -> tuple[list[int], list[int]]:
    """Output channels and stride (input pixels per cell) of every layer."""
    channels: list[int] = []
    strides: list[int] = []
    in_channels, stride = 3, 1
    for index, spec in enumerate(layers):
        if isinstance(spec, Conv):
            in_channels, stride = spec.filters, stride * spec.stride
        elif isinstance(spec, Route):
            sources = _sources(index, spec)
            if len({strides[s] for s in sources}) != 1:
                raise ValueError(f"route {index} joins layers of different strides")
            in_channels, stride = sum(channels[s] for s in sources), strides[sources[0]]
        elif isinstance(spec, Upsample):
            stride //= 2
        channels.append(in_channels)
        strides.append(stride)
    return channels, strides


def _float_count(layers: Sequence[LayerSpec]) -> int:
    """Number of float32 values after the header of a ``.weights`` file for a layer table."""
    channels, _ = _shapes(layers)
    total = 0
    for index, spec in enumerate(layers):
        if isinstance(spec, Conv):
            in_channels = channels[index - 1] if index else 3
            total += spec.filters * in_channels * spec.size**2 + spec.filters * (4 if spec.batch_norm else 1)
    return total


# Size of the official yolov3-spp.weights: 252,209,544 bytes.
DARKNET_WEIGHTS_BYTES = DARKNET_HEADER_BYTES + 4 * _float_count(YOLOV3_SPP)


class MaxPoolStride1(nn.Module):
    """Max pool with stride 1 that pads with zeros, not -inf, as the official SPP does.

    The inputs are LeakyReLU outputs and can be negative, so the border of the pooled map is 0 where a
    -inf padded pool would give the negative maximum; the official weights were used with zero padding.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        pad = (self.kernel_size - 1) // 2
        return F.max_pool2d(F.pad(x, (pad, pad, pad, pad), value=0.0), self.kernel_size, stride=1)


class YoloLayer(nn.Module):
    """Decode a head's raw map into (N, G*G*A, 85) rows: box centre and size in input pixels, sigmoid scores.

    Rows are cell-major (cell = gy * G + gx), then anchor, and the channel layout is anchor-major
    (``a * 85 + attr``): the layout of the official ``predict_transform``, with the same float32 operations.
    """

    decodes_in_float32 = True  # kept float32 when the network is converted to bf16/fp16 (precision.py)

    def __init__(self, anchors: Sequence[tuple[int, int]], stride: int) -> None:
        super().__init__()
        self.anchors = tuple(anchors)
        self.stride = stride
        self._grids: dict[tuple[int, torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def _grid(self, size: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Cell offsets and anchors in cell units, one row per output row; built once per grid and device."""
        key = (size, device, dtype)
        if key not in self._grids:
            # Normal tensors even when built under inference_mode, so that later autograd calls can use them.
            with torch.inference_mode(False), torch.no_grad():
                steps = torch.arange(size, device=device, dtype=dtype)
                gy, gx = torch.meshgrid(steps, steps, indexing="ij")
                cells = torch.stack((gx.reshape(-1), gy.reshape(-1)), dim=1)
                offsets = cells.repeat_interleave(len(self.anchors), dim=0)
                anchors = torch.tensor(self.anchors, device=device, dtype=dtype) / self.stride
                self._grids[key] = (offsets, anchors.repeat(size * size, 1))
        return self._grids[key]

    def forward(self, x: Tensor) -> Tensor:
        n, _, size, _ = x.shape
        # Decode in float32 even under autocast: exp() of fp16 logits overflows, boxes need the precision.
        raw = x.float().view(n, len(self.anchors), NUM_ATTRS, size, size).permute(0, 3, 4, 1, 2)
        raw = raw.reshape(n, size * size * len(self.anchors), NUM_ATTRS)
        offsets, anchors = self._grid(size, raw.device, raw.dtype)
        centres = (torch.sigmoid(raw[..., 0:2]) + offsets) * self.stride
        sizes = torch.exp(raw[..., 2:4]) * anchors * self.stride
        return torch.cat((centres, sizes, torch.sigmoid(raw[..., 4:])), dim=-1)


def _conv_block(index: int, spec: Conv, in_channels: int) -> nn.Sequential:
    block = nn.Sequential()
    conv = nn.Conv2d(
        in_channels, spec.filters, spec.size, spec.stride, (spec.size - 1) // 2, bias=not spec.batch_norm
    )
    block.add_module(f"conv_{index}", conv)
    if spec.batch_norm:
        block.add_module(f"batch_norm_{index}", nn.BatchNorm2d(spec.filters))
        block.add_module(f"leaky_{index}", nn.LeakyReLU(0.1, inplace=True))
    return block


class YoloV3SPP(nn.Module):
    """YOLOv3-SPP on (N, 3, S, S) letterboxed RGB in [0, 1], S = ``input_size``.

    Returns (N, B, 85) float32 rows (centre x, y, width, height in input pixels, sigmoid objectness, 80
    sigmoid class scores), coarse head first: B = 3 * (S/32)^2 + 3 * (S/16)^2 + 3 * (S/8)^2 (22,743 at 608).
    The input size changes no parameter, so one set of weights serves every multiple of 32.
    """

    def __init__(self, input_size: int = 608) -> None:
        super().__init__()
        if input_size <= 0 or input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
        self.input_size = input_size
        self.layers = YOLOV3_SPP
        channels, strides = _shapes(self.layers)
        self.module_list = nn.ModuleList()
        for index, spec in enumerate(self.layers):
            block = nn.Sequential()
            if isinstance(spec, Conv):
                block = _conv_block(index, spec, channels[index - 1] if index else 3)
            elif isinstance(spec, MaxPool):
                block.add_module(f"maxpool_{index}", MaxPoolStride1(spec.size))
            elif isinstance(spec, Upsample):
                block.add_module(f"upsample_{index}", nn.Upsample(scale_factor=2, mode="nearest"))
            elif isinstance(spec, Yolo):
                block.add_module(f"yolo_{index}", YoloLayer([ANCHORS[m] for m in spec.mask], strides[index]))
            self.module_list.append(block)
        # Outputs that a later route or shortcut reads; only these are kept during the forward pass.
        self._kept = frozenset(s for i, spec in enumerate(self.layers) for s in _sources(i, spec))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != self.input_size or x.shape[3] != self.input_size:
            size = self.input_size
            raise ValueError(f"expected input (N, 3, {size}, {size}), got {tuple(x.shape)}")
        kept: dict[int, Tensor] = {}
        detections = []
        for index, (spec, block) in enumerate(zip(self.layers, self.module_list, strict=True)):
            if isinstance(spec, Route):
                sources = [kept[s] for s in _sources(index, spec)]
                x = sources[0] if len(sources) == 1 else torch.cat(sources, dim=1)
            elif isinstance(spec, Shortcut):
                x = kept[index - 1] + kept[index + spec.offset]
            elif isinstance(spec, Yolo):
                detections.append(block(x))  # x passes through unchanged for the next route
            else:
                x = block(x)
            if index in self._kept:
                kept[index] = x
        return torch.cat(detections, dim=1)


def _darknet_tensors(model: YoloV3SPP) -> Iterator[Tensor]:
    """Every tensor stored in a ``.weights`` file, in file order."""
    for spec, block in zip(model.layers, model.module_list, strict=True):
        if not isinstance(spec, Conv):
            continue
        conv = block[0]
        if spec.batch_norm:
            norm = block[1]
            yield from (norm.bias, norm.weight, norm.running_mean, norm.running_var)
        else:
            yield conv.bias
        yield conv.weight


def _describe_size(nbytes: int) -> str:
    payload = nbytes - DARKNET_HEADER_BYTES
    if payload < 0:
        return f"{nbytes:,} bytes, less than the {DARKNET_HEADER_BYTES}-byte header"
    floats, stray = divmod(payload, 4)
    extra = f" and {stray} stray bytes" if stray else ""
    return f"{nbytes:,} bytes ({DARKNET_HEADER_BYTES}-byte header + {floats:,} float32 values{extra})"


def read_darknet_weights(model: YoloV3SPP, path: str | Path) -> None:
    """Load a darknet ``.weights`` file (the official ``yolov3-spp.weights``) into ``model`` in place.

    The format has no per-layer headers, so a file of the wrong length would load shifted garbage; the
    size is checked against the model before anything is copied and a mismatch raises ``WeightsError``.
    """
    path = Path(path)
    tensors = list(_darknet_tensors(model))
    expected_floats = sum(t.numel() for t in tensors)
    expected_bytes = DARKNET_HEADER_BYTES + 4 * expected_floats
    try:
        actual_bytes = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read detector weights {path}: {exc}") from exc
    if actual_bytes != expected_bytes:
        excess = actual_bytes - expected_bytes
        verdict = f"{abs(excess):,} bytes {'too long' if excess > 0 else 'short'}"
        raise WeightsError(
            f"{path} is not a YOLOv3-SPP darknet weights file: it has {_describe_size(actual_bytes)}, "
            f"expected {_describe_size(expected_bytes)}; {verdict} (truncated download or another network?)"
        )
    with open(path, "rb") as file, torch.no_grad():
        file.seek(DARKNET_HEADER_BYTES)
        for tensor in tensors:
            values = tensor.detach().numpy()  # the parameter's own memory: the file is read once, no copy
            if file.readinto(memoryview(values).cast("B")) != values.nbytes:
                raise WeightsError(f"{path} changed while it was read")
            if sys.byteorder == "big":
                values.byteswap(inplace=True)  # the file is little-endian


def write_darknet_weights(model: YoloV3SPP, path: str | Path, seen: int = 0) -> None:
    """Write ``model`` as a darknet ``.weights`` file (format version 0.2.0, ``seen`` images) readable by
    :func:`read_darknet_weights` and by the official loader."""
    with open(path, "wb") as file:
        np.array([0, 2, 0], dtype="<i4").tofile(file)
        np.array([seen], dtype="<i8").tofile(file)
        for tensor in _darknet_tensors(model):
            values = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
            values.astype("<f4", copy=False).tofile(file)
