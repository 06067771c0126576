"""The pose networks' builders by name: what a preset's ``network`` names (:mod:`alphapose.pose.presets`).

The preset table names its network by a word and this module, which imports the networks, resolves it,
so the table is data that reads without PyTorch. A builder takes the number of keypoints and returns the
network with uninitialised weights.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from alphapose.pose.models.fastpose import (
    fastpose_dcn_res50,
    fastpose_dcn_res50_conv256,
    fastpose_res50,
    fastpose_res50_conv256,
    fastpose_res152_conv256,
)
from alphapose.pose.models.fastpose_duc import fastpose_duc_res50_unshuffle, fastpose_duc_res152
from alphapose.pose.models.hrnet import hrnet_w32
from alphapose.pose.models.simplepose import simplepose_res50

BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    builder.__name__: builder
    for builder in (
        fastpose_res50,
        fastpose_dcn_res50,
        fastpose_res50_conv256,
        fastpose_dcn_res50_conv256,
        fastpose_res152_conv256,
        fastpose_duc_res152,
        fastpose_duc_res50_unshuffle,
        hrnet_w32,
        simplepose_res50,
    )
}
