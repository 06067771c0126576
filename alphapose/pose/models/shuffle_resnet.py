"""AlphaPose's "unshuffle" SE-ResNet: stride-2 3x3 convolutions replaced by pixel-unshuffle + 3x3 conv.

In the first block of stages 2-4 the strided 3x3 conv becomes ``PixelUnshuffle(2)`` followed by a stride-1 3x3
conv over four times the channels: every input pixel of a 2x2 cell reaches the output, none is skipped by the
stride. The pair is a ``Sequential`` named ``conv2``, so its weight is ``layerN.0.conv2.1.weight`` as in the
official checkpoints; everything else (SE gates, projection shortcuts, key names) is the SE-ResNet of
:mod:`alphapose.pose.models.resnet`.
"""

from __future__ import annotations

from torch import nn

from alphapose.pose.models.resnet import RESNET50_LAYERS, ResNet

UNSHUFFLE_FACTOR = 2


class UnshuffleConv(nn.Sequential):
    """``PixelUnshuffle(r)`` then a 3x3 stride-1 conv without bias: a stride-r 3x3 conv that sees every pixel.

    ``nn.PixelUnshuffle`` puts input pixel (y * r + i, x * r + j) of channel ``c`` at channel
    ``c * r * r + i * r + j``, the order of the official view/permute implementation the checkpoints were
    trained with. The convolution is the last child, so a batch norm after this module folds into it.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int = UNSHUFFLE_FACTOR) -> None:
        super().__init__(
            nn.PixelUnshuffle(factor),
            nn.Conv2d(in_channels * factor * factor, out_channels, 3, 1, 1, bias=False),
        )


def shuffle_resnet50() -> ResNet:
    """SE-ResNet-50 whose stride-2 3x3 convs (first block of stages 2-4) are :class:`UnshuffleConv`."""
    trunk = ResNet(RESNET50_LAYERS, squeeze_excitation=True)
    for stage in (trunk.layer2, trunk.layer3, trunk.layer4):
        block = stage[0]
        planes = block.conv2.in_channels
        # Same attribute, same place in the block's registration order: the state_dict order is unchanged.
        block.conv2 = UnshuffleConv(planes, planes)
    return trunk
