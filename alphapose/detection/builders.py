"""The detector networks' builders by name: what a detector's ``network`` names
(:mod:`alphapose.detection.detectors`).

The detector table names its network by a word and this module, which imports the networks, resolves it,
so the table is data that reads without PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from alphapose.detection.darknet import YoloV3SPP
from alphapose.detection.yolox_net import yolox_l, yolox_m, yolox_s, yolox_x

# YOLOv3-SPP's builder takes the input size, YOLOX's nothing
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    builder.__name__: builder for builder in (YoloV3SPP, yolox_s, yolox_m, yolox_l, yolox_x)
}
