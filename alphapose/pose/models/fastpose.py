"""FastPose: SE-ResNet-50 trunk and a pixel-shuffle (DUC) upsampling head, AlphaPose's default pose net.

Attribute names (``preact``, ``suffle1``, ``duc1``, ``duc2``, ``conv_out``) are those of the official
checkpoints, misspelling included, so they load with a strict ``load_state_dict``.
"""

from __future__ import annotations

import torch
from torch import nn

from alphapose.pose.models.resnet import ResNet, resnet50, resnet152

DCN_STAGES = (False, True, True, True)


class DUC(nn.Module):
    """Dense upsampling convolution: 3x3 conv, BN, ReLU, then PixelShuffle.

    ``PixelShuffle(r)`` maps channel ``c * r * r + i * r + j`` at (y, x) to channel ``c`` at
    (y * r + i, x * r + j); the checkpoints' conv channel order depends on it.
    """

    def __init__(self, inplanes: int, planes: int, upscale_factor: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixel_shuffle(self.relu(self.bn(self.conv(x))))


class FastPose(nn.Module):
    """(N, 3, 256, 192) crops -> (N, K, 64, 48) raw heatmaps (no sigmoid), 1/4 of the input size.

    Head: 2048 x H/32 -> PixelShuffle -> 512 x H/16 -> DUC -> 256 x H/8 -> DUC -> ``conv_dim`` x H/4 -> 3x3
    conv with bias to K joints. ``conv_dim`` is 128 for the COCO and Halpe-26 models and the multi-domain
    and COCO-WholeBody regression models on ResNet-50 (their configs set no ``CONV_DIM``), 256 for the
    other whole-body models.
    """

    def __init__(self, backbone: ResNet, num_joints: int, conv_dim: int = 128) -> None:
        super().__init__()
        self.preact = backbone
        self.suffle1 = nn.PixelShuffle(2)
        self.duc1 = DUC(512, 1024, upscale_factor=2)
        self.duc2 = DUC(256, conv_dim * 4, upscale_factor=2)
        self.conv_out = nn.Conv2d(conv_dim, num_joints, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.suffle1(self.preact(x))
        out = self.duc2(self.duc1(out))
        return self.conv_out(out)


def fastpose_res50(num_joints: int = 17) -> FastPose:
    """FastPose on SE-ResNet-50 (fast_res50_256x192.pth, halpe26_fast_res50_256x192.pth)."""
    return FastPose(resnet50(squeeze_excitation=True), num_joints)


def fastpose_dcn_res50(num_joints: int = 17) -> FastPose:
    """FastPose on SE-ResNet-50 with deformable 3x3 convs in stages 2-4 (fast_dcn_res50_256x192.pth)."""
    return FastPose(resnet50(squeeze_excitation=True, deformable_stages=DCN_STAGES), num_joints)


def fastpose_res50_conv256(num_joints: int = 136) -> FastPose:
    """FastPose on SE-ResNet-50 with a 256-channel last DUC (whole-body configs with ``CONV_DIM: 256``)."""
    return FastPose(resnet50(squeeze_excitation=True), num_joints, conv_dim=256)


def fastpose_dcn_res50_conv256(num_joints: int = 136) -> FastPose:
    """FastPose-DCN (stages 2-4) on SE-ResNet-50 with a 256-channel last DUC (whole-body DCN models)."""
    return FastPose(resnet50(squeeze_excitation=True, deformable_stages=DCN_STAGES), num_joints, conv_dim=256)


def fastpose_res152_conv256(num_joints: int = 136) -> FastPose:
    """FastPose on SE-ResNet-152 with a 256-channel last DUC: the whole-body configs named "1x-duc"
    (``MODEL.TYPE: FastPose``, ``NUM_LAYERS: 152``, ``CONV_DIM: 256``)."""
    return FastPose(resnet152(squeeze_excitation=True), num_joints, conv_dim=256)
