"""ResNet-50 and -152 trunks shared by the pose networks, with AlphaPose's squeeze-excitation and DCN options.

Module names follow torchvision's resnet (``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer1.0.downsample.0``,
...) plus AlphaPose's additions (``layerN.0.se.fc.{0,2}``, ``layerN.M.conv2_offset``), so the official
checkpoints load with a strict ``load_state_dict``. Every convolution is a plain ``nn.Conv2d`` followed by
its own ``nn.BatchNorm2d``, which lets an inference step fold the norms into the convolutions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import deform_conv2d

RESNET50_LAYERS = (3, 4, 6, 3)
RESNET152_LAYERS = (3, 8, 36, 3)


class SELayer(nn.Module):
    """Channel gate ``x * sigmoid(fc(avgpool(x)))`` with reduction 1, as in AlphaPose's SE-ResNet."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(self.avg_pool(x).flatten(1))
        return x * gate[:, :, None, None]


class DeformConv2d(nn.Module):
    """Deformable 3x3 convolution (DCN v1, no modulation, one offset group), weight only.

    The offsets come from the caller (the block's ``conv2_offset``) so the checkpoint keys stay
    ``conv2_offset.*`` next to ``conv2.weight``. Offset channel layout: for kernel tap ``k = i * 3 + j``
    (row-major), channel ``2k`` is the y (row) displacement and ``2k + 1`` the x (column) displacement. This
    is the layout of the mmdetection DCN kernel the official models were trained with (``deform_im2col``
    reads ``offset_h`` at ``2 * (i * kernel_w + j)`` and ``offset_w`` at the next channel) and of
    ``torchvision.ops.deform_conv2d``; both sample with the same zero-outside bilinear rule.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.register_parameter("bias", None)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv) with optional SE gate and deformable 3x3 conv.

    The SE gate scales the residual branch after ``bn3``, before the identity is added.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        squeeze_excitation: bool = False,
        deformable: bool = False,
    ) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2_offset: nn.Conv2d | None = None
        self.conv2: nn.Conv2d | DeformConv2d
        if deformable:
            # Registered before conv2 so the state_dict order matches the official checkpoints; zero
            # initialised so an untrained block starts out as a plain 3x3 conv.
            self.conv2_offset = nn.Conv2d(planes, 18, 3, stride, 1, bias=True)
            nn.init.zeros_(self.conv2_offset.weight)
            nn.init.zeros_(self.conv2_offset.bias)
            self.conv2 = DeformConv2d(planes, planes, stride=stride, padding=1)
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.se = SELayer(width) if squeeze_excitation else None
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out) if self.conv2_offset is None else self.conv2(out, self.conv2_offset(out))
        out = self.relu(self.bn2(out))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _make_stage(
    inplanes: int, planes: int, blocks: int, stride: int, squeeze_excitation: bool, deformable: bool
) -> nn.Sequential:
    """One stage; only its first block changes resolution or width, so only it gets a projection and SE."""
    width = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != width:
        downsample = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride, bias=False), nn.BatchNorm2d(width))
    first = Bottleneck(
        inplanes,
        planes,
        stride,
        downsample,
        squeeze_excitation=squeeze_excitation and downsample is not None,
        deformable=deformable,
    )
    rest = (Bottleneck(width, planes, deformable=deformable) for _ in range(1, blocks))
    return nn.Sequential(first, *rest)


class ResNet(nn.Module):
    """Bottleneck ResNet trunk without the classifier: (N, 3, H, W) -> (N, 2048, H/32, W/32).

    ``squeeze_excitation`` puts an SE gate in the first block of every stage only (the block with the
    projection shortcut), which is where AlphaPose's SE-ResNet has it. ``deformable_stages`` makes the 3x3
    conv of every block in the chosen stages deformable.
    """

    def __init__(
        self,
        layers: Sequence[int] = RESNET50_LAYERS,
        squeeze_excitation: bool = False,
        deformable_stages: Sequence[bool] = (False, False, False, False),
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(deformable_stages) != 4:
            raise ValueError("ResNet needs four stages: layers and deformable_stages must have length 4")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        se, dcn = squeeze_excitation, deformable_stages
        self.layer1 = _make_stage(64, 64, layers[0], 1, se, dcn[0])
        self.layer2 = _make_stage(256, 128, layers[1], 2, se, dcn[1])
        self.layer3 = _make_stage(512, 256, layers[2], 2, se, dcn[2])
        self.layer4 = _make_stage(1024, 512, layers[3], 2, se, dcn[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet50(squeeze_excitation: bool = False, deformable_stages: Sequence[bool] = (False,) * 4) -> ResNet:
    """ResNet-50 trunk; AlphaPose's FastPose uses ``squeeze_excitation=True``, SimplePose the plain one."""
    return ResNet(RESNET50_LAYERS, squeeze_excitation, deformable_stages)


def resnet152(squeeze_excitation: bool = False) -> ResNet:
    """ResNet-152 trunk; AlphaPose's FastPose-DUC R152 models use ``squeeze_excitation=True``."""
    return ResNet(RESNET152_LAYERS, squeeze_excitation)
