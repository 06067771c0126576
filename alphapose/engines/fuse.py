"""Batch norm folded into the convolution in front of it, for inference.

In eval mode a ``BatchNorm2d`` is a fixed per-channel affine map, ``(x - mean) * gamma / sqrt(var + eps) +
beta``, so it can be absorbed into the weight and bias of the convolution that feeds it. The network then
computes the same function with one pass over every activation map less; outputs differ from the unfolded
network only by float32 rounding.

Folding changes the weights, so it runs after the official state_dict was loaded and checked; a folded
model no longer has the checkpoint's keys and is meant for inference only.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from alphapose.pose.models.resnet import DeformConv2d

_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d, DeformConv2d)


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every batch norm that follows a convolution into it, in place; returns how many were folded.

    A pair is a convolution and the ``BatchNorm2d`` registered right after it in the same parent, with as
    many features as the convolution has output channels: ``conv1``/``bn1`` in a block, ``(conv, bn, act)``
    in a ``Sequential``, or a ``Sequential`` ending in a convolution and the norm after it (``conv2`` =
    pixel-unshuffle + conv, then ``bn2``, in the unshuffle ResNet). Every network in this package is
    written that way (each convolution feeds its own norm and nothing else), and the tests compare folded
    with unfolded outputs for each of them. The norm is replaced by ``nn.Identity``.
    """
    if model.training:
        raise ValueError("batch norms can only be folded in eval mode (training mode uses batch statistics)")
    folded = 0
    for parent in list(model.modules()):
        for (_, producer), (name, norm) in pairwise(list(parent.named_children())):
            conv = _output_convolution(producer)
            if _foldable(conv, norm):
                _fold(conv, norm)
                setattr(parent, name, nn.Identity())
                folded += 1
    return folded


def _output_convolution(module: nn.Module) -> nn.Module:
    """The module whose output ``module`` returns: itself, or the last module of a ``Sequential``."""
    return module[-1] if isinstance(module, nn.Sequential) and len(module) else module


def _out_channels(conv: nn.Module) -> int:
    if isinstance(conv, nn.ConvTranspose2d):
        return conv.weight.shape[1] * conv.groups
    return conv.weight.shape[0]


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (
        isinstance(conv, _CONVOLUTIONS)
        and isinstance(norm, nn.BatchNorm2d)
        and norm.running_mean is not None
        and not (isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1)
        and _out_channels(conv) == norm.num_features
    )


@torch.no_grad()
def _fold(conv: nn.Module, norm: nn.BatchNorm2d) -> None:
    """weight' = weight * s and bias' = (bias - mean) * s + beta per output channel, s = gamma / std.

    s and the bias are computed in float64; the weight is scaled in place, so folding a network needs no
    second copy of its weights.
    """
    mean, var = norm.running_mean.double(), norm.running_var.double()
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + norm.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    # The output channel is dim 0 of a convolution's weight and dim 1 of a transposed one's.
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
    conv.weight.mul_(scale.to(conv.weight.dtype).view(shape))
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(conv.weight.dtype), conv.weight.requires_grad)
