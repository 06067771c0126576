"""SimplePose (Simple Baselines): plain ResNet-50 trunk and three stride-2 deconvolutions."""

from __future__ import annotations

import torch
from torch import nn

from alphapose.pose.models.resnet import ResNet, resnet50


def _deconv_stack(in_channels: int, channels: int, stages: int = 3) -> nn.Sequential:
    """(ConvTranspose2d 4x4 stride 2 padding 1, BN, ReLU) x stages: each doubles H and W exactly.

    Sequential indices 0/1, 3/4, 6/7 hold the weights, as in the official ``deconv_layers``.
    """
    layers: list[nn.Module] = []
    for i in range(stages):
        layers += [
            nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SimplePose(nn.Module):
    """(N, 3, 256, 192) crops -> (N, K, 64, 48) raw heatmaps: 8x6 trunk output upsampled 8x, 1x1 conv."""

    def __init__(self, backbone: ResNet, num_joints: int, deconv_dim: int = 256) -> None:
        super().__init__()
        self.preact = backbone
        self.deconv_layers = _deconv_stack(512 * 4, deconv_dim)
        self.final_layer = nn.Conv2d(deconv_dim, num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(self.preact(x)))


def simplepose_res50(num_joints: int = 17) -> SimplePose:
    """SimplePose on plain ResNet-50 (simple_res50_256x192.pth)."""
    return SimplePose(resnet50(), num_joints)
