"""FastPose-DUC: a ResNet trunk and three dense-upsampling stages, AlphaPose's most accurate COCO models.

Each stage is a ``Sequential`` of ``PixelShuffle(2)`` then (3x3 conv, BN, ReLU) blocks, with the official
numeric keys (``duc1.1.weight``, ``duc1.2.running_mean``, ...), so the checkpoints load with a strict
``load_state_dict``. Unlike :class:`~alphapose.pose.models.fastpose.FastPose` the shuffle comes first in a
stage and the convolutions work at the upsampled resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from alphapose.pose.models.resnet import ResNet, resnet152
from alphapose.pose.models.shuffle_resnet import shuffle_resnet50

COCO_STAGE_CONVS = (4, 2, 1)  # the "421" of the official log names: 3x3 convs in duc1, duc2, duc3


def duc_stage(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """PixelShuffle(2) to ``in_channels / 4`` channels at twice the size, then ``convs`` (conv, BN, ReLU).

    All but the last conv keep ``in_channels / 4`` channels; the last one maps to ``out_channels``.
    """
    if convs < 1 or in_channels % 4:
        raise ValueError(
            f"a DUC stage needs convs >= 1 and in_channels divisible by 4, got {convs} and {in_channels}"
        )
    width = in_channels // 4
    layers: list[nn.Module] = [nn.PixelShuffle(2)]
    for index in range(convs):
        out = out_channels if index == convs - 1 else width
        conv = nn.Conv2d(width, out, 3, padding=1, bias=False)
        layers += [conv, nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FastPoseDUC(nn.Module):
    """(N, 3, 256, 192) crops -> (N, K, 64, 48) raw heatmaps (no sigmoid), 1/4 of the input size.

    Head: 2048 x H/32 -> duc1 -> 1024 x H/16 -> duc2 -> 512 x H/8 -> duc3 -> ``conv_dim`` x H/4 -> 3x3 conv
    with bias to K joints. ``stage_convs`` is the config's ``STAGE{1,2,3}.NUM_CONV``.
    """

    def __init__(
        self,
        backbone: ResNet,
        num_joints: int,
        stage_convs: Sequence[int] = COCO_STAGE_CONVS,
        conv_dim: int = 256,
    ) -> None:
        super().__init__()
        if len(stage_convs) != 3:
            raise ValueError(f"FastPoseDUC has three DUC stages, got stage_convs={tuple(stage_convs)}")
        self.preact = backbone
        self.duc1 = duc_stage(2048, 1024, stage_convs[0])
        self.duc2 = duc_stage(1024, 512, stage_convs[1])
        self.duc3 = duc_stage(512, conv_dim, stage_convs[2])
        self.conv_out = nn.Conv2d(conv_dim, num_joints, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.duc3(self.duc2(self.duc1(self.preact(x))))
        return self.conv_out(out)


def fastpose_duc_res152(num_joints: int = 17) -> FastPoseDUC:
    """FastPose-DUC on SE-ResNet-152 (fast_421_res152_256x192.pth)."""
    return FastPoseDUC(resnet152(squeeze_excitation=True), num_joints)


def fastpose_duc_res50_unshuffle(num_joints: int = 17) -> FastPoseDUC:
    """FastPose-DUC on the pixel-unshuffle SE-ResNet-50 (fast_421_res50-shuffle_256x192.pth)."""
    return FastPoseDUC(shuffle_resnet50(), num_joints)
