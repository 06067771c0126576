"""The operation counts behind the benchmarks' GFLOP/s agree with the detectors' published ones."""

from __future__ import annotations

import pytest
import torch

from alphapose.detectors import DETECTORS
from alphapose.models import yolox
from alphapose.models.darknet import YoloV3SPP
from bench.measure import count_flops

BUILDERS = {
    "yolov3-spp": YoloV3SPP,
    "yolox-s": yolox.yolox_s,
    "yolox-m": yolox.yolox_m,
    "yolox-l": yolox.yolox_l,
    "yolox-x": yolox.yolox_x,
}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_counted_operations_are_the_published_ones(name: str) -> None:
    """Darknet and YOLOX publish a multiply-add as two operations at the input size AlphaPose uses; the
    counter's rates are only comparable across engines and with the CPU's peak if it counts the same."""
    spec = DETECTORS[name]
    size = spec.input_size
    with torch.device("meta"):
        model = BUILDERS[name]().eval()
        flops = count_flops(model, torch.zeros(1, 3, size, size))
    assert flops / 1e9 == pytest.approx(spec.gflops, rel=0.005)
