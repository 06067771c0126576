"""Seeded weights in the official file formats, rebuilt bit for bit by the generators and the tests.

The pose checkpoints come from the synthetic weights writer as they are. Its detector fires one giant
box (every cell predicts the same thing), which cannot show the order, the NMS and the mapping of several
detections; :func:`multi_person_detector` keeps its random, calibrated features and gives the output
convolutions seeded random weights instead, so that objectness, box centres and sizes vary from cell to
cell: on a photo a handful of cells pass the 0.1 threshold with distinct scores, all of them persons.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from alphapose.detection.darknet import NUM_ATTRS, YoloV3SPP, write_darknet_weights
from alphapose.detection.detectors import DEFAULT_DETECTOR, get_detector
from alphapose.pose.presets import get_preset
from tools.synthetic_weights import synthetic_detector, synthetic_pose_model

POSE_SEED = 11
# The random offsets of the synthetic DCN network reach several pixels and make it chaotic: a rounding
# difference grows by ~30x per stage (1e-5 after stage 2, 1.4 in the heatmaps), so no two correct
# implementations agree. Offsets a tenth as large keep the sampling deformable (fractional, varied) and
# the network stable.
DCN_OFFSET_SCALE = 0.1
DETECTOR_SEED = 12
# Output convolutions: weight scale (of fan-in uniform), objectness bias, box-size bias (log of the anchor
# multiple): chosen so that the test photo at 608 gives a few dozen candidate boxes, some overlapping.
HEAD_WEIGHT_SCALE = 2.0
OBJECTNESS_BIAS = -5.5
SIZE_BIAS = 1.5
SIZE_WEIGHT_SCALE = 0.3
CLASS_WEIGHT_SCALE = 0.2


def write_pose_checkpoint(preset: str, directory: Path, seed: int = POSE_SEED) -> Path:
    """The preset's checkpoint under its official name, with the synthetic writer's weights for ``seed``."""
    path = directory / get_preset(preset).checkpoint.name
    state = synthetic_pose_model(preset, torch.Generator().manual_seed(seed)).state_dict()
    for key in state:
        if ".conv2_offset." in key:
            state[key] = state[key] * DCN_OFFSET_SCALE
    torch.save(state, path)
    return path


def multi_person_detector(seed: int = DETECTOR_SEED) -> YoloV3SPP:
    """YOLOv3-SPP whose heads see the features: several person boxes with distinct scores on a photo."""
    generator = torch.Generator().manual_seed(seed)
    model = synthetic_detector(persons=False, person_score=0.5, generator=generator)
    heads = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    with torch.no_grad():
        for head in heads:
            bound = HEAD_WEIGHT_SCALE / math.sqrt(head.weight[0].numel())
            weight = head.weight.view(-1, NUM_ATTRS, *head.weight.shape[1:])
            weight.uniform_(-bound, bound, generator=generator)
            weight[:, 2:4] *= SIZE_WEIGHT_SCALE
            weight[:, 5:] *= CLASS_WEIGHT_SCALE
            bias = head.bias.view(-1, NUM_ATTRS)
            bias[:, 0:2] = 0.0
            bias[:, 2:4] = SIZE_BIAS
            bias[:, 4] = OBJECTNESS_BIAS
            bias[:, 5] = 4.0
            bias[:, 6:] = -4.0
    return model


def write_detector_weights(directory: Path, seed: int = DETECTOR_SEED) -> Path:
    path = directory / get_detector(DEFAULT_DETECTOR).weights.name
    write_darknet_weights(multi_person_detector(seed), path)
    return path
