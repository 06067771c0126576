"""HRNet (High-Resolution Net) for pose: parallel branches at 1/4, 1/8, 1/16 and 1/32 of the input, fused
after every module, heatmaps read off the 1/4 branch.

Module names and order follow the official ``PoseHighResolutionNet`` (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition1-3``, ``stage2-4`` of ``branches`` and ``fuse_layers``, ``final_layer``), so its
checkpoints load with a strict ``load_state_dict``. Where the official network keeps ``None`` (a branch that
passes through a transition unchanged, a branch's own term in a fuse sum) this one has ``nn.Identity``:
neither holds parameters, so the keys are the same and the forward pass needs no special cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from alphapose.pose.models.resnet import Bottleneck

STEM_CHANNELS = 64
BLOCKS_PER_BRANCH = 4
STAGE_MODULES = (1, 4, 3)  # HighResolutionModules in stages 2, 3 and 4 (2, 3 and 4 branches)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with a ReLU between and an identity shortcut (branches never change width)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _fuse_term(channels: Sequence[int], source: int, target: int) -> nn.Module:
    """What branch ``source`` adds to branch ``target``: the same map, or resampled to its size and width.

    Coarser sources: 1x1 conv + BN, then nearest upsampling. Finer sources: a chain of stride-2 3x3 conv +
    BN (+ ReLU except after the last), keeping the source width until the last step reaches the target's.
    """
    if source == target:
        return nn.Identity()
    if source > target:
        conv = _conv_bn(channels[source], channels[target], 1, 1, relu=False)
        return nn.Sequential(*conv, nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"))
    steps = target - source
    return nn.Sequential(
        *(
            _conv_bn(channels[source], channels[target] if last else channels[source], 3, 2, relu=not last)
            for last in (step == steps - 1 for step in range(steps))
        )
    )


class HighResolutionModule(nn.Module):
    """Residual blocks on every branch, then each output branch sums every branch brought to its resolution.

    With ``multi_scale_output=False`` only the finest branch is produced (the last module of the network).
    """

    def __init__(self, channels: Sequence[int], multi_scale_output: bool = True) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"a HighResolutionModule joins at least two branches, got channels={channels}")
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(width) for _ in range(BLOCKS_PER_BRANCH))) for width in channels
        )
        outputs = len(channels) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_term(channels, source, target) for source in range(len(channels)))
            for target in range(outputs)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        fused = []
        for terms in self.fuse_layers:
            total = terms[0](xs[0])
            for term, x in zip(terms[1:], xs[1:], strict=True):
                total = total + term(x)  # summed in branch order, as the official module does
            fused.append(self.relu(total))
        return fused


def _transition(before: Sequence[int], after: Sequence[int]) -> nn.ModuleList:
    """Inputs of the next stage: existing branches kept (or re-widthed by a 3x3 conv), a new coarser branch
    made from the coarsest existing one by stride-2 3x3 convs."""
    layers: list[nn.Module] = []
    for index, width in enumerate(after):
        if index < len(before):
            keep = width == before[index]
            layers.append(nn.Identity() if keep else _conv_bn(before[index], width, 3, 1, relu=True))
        else:
            steps = index + 1 - len(before)
            layers.append(
                nn.Sequential(
                    *(
                        _conv_bn(before[-1], width if step == steps - 1 else before[-1], 3, 2, relu=True)
                        for step in range(steps)
                    )
                )
            )
    return nn.ModuleList(layers)


def _apply_transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Branch i reads branch i of the previous stage; a new branch reads the previous coarsest branch."""
    return [layer(xs[min(index, len(xs) - 1)]) for index, layer in enumerate(transition)]


class HRNet(nn.Module):
    """(N, 3, 256, 192) crops -> (N, K, 64, 48) raw heatmaps.

    Stem: two stride-2 3x3 convs (64 channels, 1/4 size) and four bottlenecks (256 channels). Stages 2-4 have
    2, 3 and 4 branches of widths ``width * (1, 2, 4, 8)``; the 1x1 ``final_layer`` reads the 1/4 branch.
    """

    def __init__(self, num_joints: int, width: int = 32) -> None:
        super().__init__()
        widths = tuple(width * 2**branch for branch in range(4))
        stem = Bottleneck.expansion * STEM_CHANNELS
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        projection = nn.Sequential(nn.Conv2d(STEM_CHANNELS, stem, 1, bias=False), nn.BatchNorm2d(stem))
        self.layer1 = nn.Sequential(
            Bottleneck(STEM_CHANNELS, STEM_CHANNELS, downsample=projection),
            *(Bottleneck(stem, STEM_CHANNELS) for _ in range(BLOCKS_PER_BRANCH - 1)),
        )
        self.transition1 = _transition((stem,), widths[:2])
        self.stage2 = self._stage(widths[:2], STAGE_MODULES[0])
        self.transition2 = _transition(widths[:2], widths[:3])
        self.stage3 = self._stage(widths[:3], STAGE_MODULES[1])
        self.transition3 = _transition(widths[:3], widths)
        self.stage4 = self._stage(widths, STAGE_MODULES[2], multi_scale_output=False)
        self.final_layer = nn.Conv2d(width, num_joints, 1)

    @staticmethod
    def _stage(channels: Sequence[int], modules: int, multi_scale_output: bool = True) -> nn.Sequential:
        """``modules`` HighResolutionModules; only the last one may drop the coarser outputs."""
        return nn.Sequential(
            *(
                HighResolutionModule(channels, multi_scale_output or index < modules - 1)
                for index in range(modules)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(self.relu(self.bn2(self.conv2(x))))
        xs = self.stage2(_apply_transition(self.transition1, [x]))
        xs = self.stage3(_apply_transition(self.transition2, xs))
        xs = self.stage4(_apply_transition(self.transition3, xs))
        return self.final_layer(xs[0])


def hrnet_w32(num_joints: int = 17) -> HRNet:
    """HRNet-W32 (hrnet_w32_256x192.pth)."""
    return HRNet(num_joints, width=32)
