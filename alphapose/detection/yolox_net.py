"""YOLOX object detectors (-s, -m, -l, -x, -tiny), the person detectors AlphaPose offers besides YOLOv3-SPP.

One network for every variant, scaled by a depth and a width multiplier: a CSPDarknet backbone with a
Focus stem, a PAFPN neck and a decoupled head, SiLU activations and batch norms with eps 1e-3. Module
names and parameter shapes are those of the official YOLOX code, so the ``"model"`` entry of the official
release files (``yolox_s.pth``, ...) loads strictly. Every convolution is followed by its own batch norm
registered right after it, which is what :func:`alphapose.engines.fuse.fold_batch_norms` folds.

The forward pass is the official eval-mode one: (N, 3, S, S) float32 BGR pixels in 0..255 in, decoded
predictions (N, boxes, 85) out, rows ``cx, cy, w, h, objectness, 80 class scores`` in input pixels, the
stride-8 cells first (8,400 rows at 640).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_CLASSES = 80  # COCO; class 0 is "person"
NUM_ATTRS = 5 + NUM_CLASSES  # cx, cy, w, h, objectness, class scores
STRIDES = (8, 16, 32)  # of the three output levels
BN_EPS = 1e-3  # the official training sets this on every batch norm; the release files assume it
BN_MOMENTUM = 0.03
_NECK_CHANNELS = (256, 512, 1024)  # at width 1.0, stride 8 / 16 / 32
_HEAD_CHANNELS = 256  # at width 1.0


@dataclass(frozen=True)
class YoloxScale:
    """How a member of the family scales the network: its depth and width multipliers."""

    depth: float
    width: float

    @property
    def base_channels(self) -> int:
        return int(self.width * 64)

    @property
    def base_depth(self) -> int:
        """Bottlenecks per CSP layer of the stride-4 and stride-32 backbone stages and of the neck."""
        return max(round(self.depth * 3), 1)

    def channels(self, channels_at_width_one: int) -> int:
        return int(channels_at_width_one * self.width)


class ConvBnAct(nn.Module):
    """Convolution with "same" padding and no bias, batch norm, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Focus(nn.Module):
    """Stem: every 2x2 pixel block folded into channels (top-left, bottom-left, top-right, bottom-right),
    then a 3x3 convolution. Halves the resolution without losing a pixel."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBnAct(4 * 3, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        blocks = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(blocks, dim=1))


class Bottleneck(nn.Module):
    """1x1 then 3x3 convolution at constant width, with a residual sum when ``shortcut``."""

    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(channels, channels, 1)
        self.conv2 = ConvBnAct(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.shortcut else y


class CSPLayer(nn.Module):
    """Cross-stage partial layer: half the channels go through ``blocks`` bottlenecks, half around them."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, shortcut: bool = True) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = ConvBnAct(in_channels, hidden, 1)
        self.conv2 = ConvBnAct(in_channels, hidden, 1)
        self.conv3 = ConvBnAct(2 * hidden, out_channels, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: stride-1 max pools of 5, 9 and 13 concatenated with their input."""

    POOLS = (5, 9, 13)

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = ConvBnAct(in_channels, hidden, 1)
        self.conv2 = ConvBnAct(hidden * (len(self.POOLS) + 1), out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        pooled = [F.max_pool2d(x, size, stride=1, padding=size // 2) for size in self.POOLS]
        return self.conv2(torch.cat([x, *pooled], dim=1))


def _stage(in_channels: int, out_channels: int, blocks: int) -> nn.Sequential:
    """A stride-2 convolution and a CSP layer: one backbone stage."""
    return nn.Sequential(
        ConvBnAct(in_channels, out_channels, 3, stride=2), CSPLayer(out_channels, out_channels, blocks)
    )


class CSPDarknet(nn.Module):
    """Backbone; returns the stride-8, -16 and -32 feature maps."""

    def __init__(self, scale: YoloxScale) -> None:
        super().__init__()
        c, n = scale.base_channels, scale.base_depth
        self.stem = Focus(c)
        self.dark2 = _stage(c, 2 * c, n)
        self.dark3 = _stage(2 * c, 4 * c, 3 * n)
        self.dark4 = _stage(4 * c, 8 * c, 3 * n)
        self.dark5 = nn.Sequential(
            ConvBnAct(8 * c, 16 * c, 3, stride=2),
            SPPBottleneck(16 * c, 16 * c),
            CSPLayer(16 * c, 16 * c, n, shortcut=False),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c3 = self.dark3(self.dark2(self.stem(x)))
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


class PAFPN(nn.Module):
    """Backbone plus path-aggregation neck: top-down then bottom-up fusion of the three levels.

    Holds the backbone as ``backbone`` because the official module does (keys ``backbone.backbone.*``).
    """

    def __init__(self, scale: YoloxScale) -> None:
        super().__init__()
        c8, c16, c32 = (scale.channels(c) for c in _NECK_CHANNELS)
        n = round(3 * scale.depth)
        self.backbone = CSPDarknet(scale)
        self.lateral_conv0 = ConvBnAct(c32, c16, 1)
        self.C3_p4 = CSPLayer(2 * c16, c16, n, shortcut=False)
        self.reduce_conv1 = ConvBnAct(c16, c8, 1)
        self.C3_p3 = CSPLayer(2 * c8, c8, n, shortcut=False)
        self.bu_conv2 = ConvBnAct(c8, c8, 3, stride=2)
        self.C3_n3 = CSPLayer(2 * c8, c16, n, shortcut=False)
        self.bu_conv1 = ConvBnAct(c16, c16, 3, stride=2)
        self.C3_n4 = CSPLayer(2 * c16, c32, n, shortcut=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c3, c4, c5 = self.backbone(x)
        top32 = self.lateral_conv0(c5)
        p4 = self.C3_p4(torch.cat((_upsample(top32), c4), dim=1))
        top16 = self.reduce_conv1(p4)
        out8 = self.C3_p3(torch.cat((_upsample(top16), c3), dim=1))
        out16 = self.C3_n3(torch.cat((self.bu_conv2(out8), top16), dim=1))
        out32 = self.C3_n4(torch.cat((self.bu_conv1(out16), top32), dim=1))
        return out8, out16, out32


def _upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class DecoupledHead(nn.Module):
    """Per level: a 1x1 stem, then separate classification and regression branches of two 3x3 convs.

    The regression branch feeds both the box (``reg_preds``) and the objectness (``obj_preds``) output.
    The official module registers its lists in this order; keeping it keeps the state_dict's key order.
    """

    def __init__(self, scale: YoloxScale) -> None:
        super().__init__()
        hidden = scale.channels(_HEAD_CHANNELS)
        levels = [scale.channels(c) for c in _NECK_CHANNELS]
        self.cls_convs = nn.ModuleList(_branch(hidden) for _ in levels)
        self.reg_convs = nn.ModuleList(_branch(hidden) for _ in levels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hidden, NUM_CLASSES, 1) for _ in levels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in levels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in levels)
        self.stems = nn.ModuleList(ConvBnAct(c, hidden, 1) for c in levels)

    def forward(self, features: tuple[Tensor, ...]) -> Tensor:
        """Undecoded rows (N, boxes, 85): box offsets and log sizes, sigmoid objectness and class scores."""
        levels = []
        for k, x in enumerate(features):
            x = self.stems[k](x)
            cls = self.cls_preds[k](self.cls_convs[k](x))
            reg_features = self.reg_convs[k](x)
            box, obj = self.reg_preds[k](reg_features), self.obj_preds[k](reg_features)
            levels.append(torch.cat((box, obj.sigmoid(), cls.sigmoid()), dim=1).flatten(2))
        return torch.cat(levels, dim=2).transpose(1, 2)


def _branch(channels: int) -> nn.Sequential:
    return nn.Sequential(ConvBnAct(channels, channels, 3), ConvBnAct(channels, channels, 3))


class YOLOX(nn.Module):
    """A YOLOX detector in eval form: (N, 3, S, S) BGR pixels in 0..255 to decoded (N, boxes, 85).

    S must be a multiple of 32. ``backbone`` and ``head`` are the official top-level names.
    """

    def __init__(self, scale: YoloxScale) -> None:
        super().__init__()
        self.scale = scale
        self.backbone = PAFPN(scale)
        self.head = DecoupledHead(scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"expected input (N, 3, H, W), H and W multiples of 32, got {tuple(x.shape)}")
        rows = self.head(self.backbone(x))
        grid, strides = _grid(x.shape[2], x.shape[3], rows.device)
        # (offset + cell) * stride and exp(log size) * stride, in float32 as the official decoding
        centres = (rows[..., 0:2] + grid) * strides
        sizes = torch.exp(rows[..., 2:4]) * strides
        return torch.cat((centres, sizes, rows[..., 4:]), dim=2)


@cache
def _grid(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Cell (x, y) (boxes, 2) and stride (boxes, 1) of every row, in float32, for an input size."""
    cells, strides = [], []
    for stride in STRIDES:
        ys, xs = torch.meshgrid(torch.arange(height // stride), torch.arange(width // stride), indexing="ij")
        cells.append(torch.stack((xs, ys), dim=2).reshape(-1, 2))
        strides.append(torch.full((cells[-1].shape[0], 1), stride))
    return torch.cat(cells).float().to(device), torch.cat(strides).float().to(device)


# One builder per member of the family, as published (the official exps/default/yolox_*.py); the detector
# table's rows point at theirs. YOLOX-tiny has no row (it is published for 416x416 inputs, not AlphaPose's
# 640): its network is the cheapest member, which the tests build.


def yolox_tiny() -> YOLOX:
    return YOLOX(YoloxScale(depth=0.33, width=0.375))


def yolox_s() -> YOLOX:
    return YOLOX(YoloxScale(depth=0.33, width=0.50))


def yolox_m() -> YOLOX:
    return YOLOX(YoloxScale(depth=0.67, width=0.75))


def yolox_l() -> YOLOX:
    return YOLOX(YoloxScale(depth=1.00, width=1.00))


def yolox_x() -> YOLOX:
    return YOLOX(YoloxScale(depth=1.33, width=1.25))
