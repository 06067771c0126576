"""The arithmetic behind the benchmarks' GFLOP/s: operation counts that agree with the detectors'
published ones, and a dense reference product that every engine computes in float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from alphapose.detection import yolox_net as yolox
from alphapose.detection.darknet import YoloV3SPP
from alphapose.detection.detectors import DETECTORS
from bench.engines import DenseProduct, available_engines, columns, dense_inputs, dense_product
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


@pytest.mark.parametrize("engine", available_engines())
def test_every_engine_computes_the_dense_product_in_float32(engine: str, tmp_path: Path) -> None:
    """The dense rate is only each runtime's fp32 rate if the runtime computes the product in float32
    (OpenVINO's CPU plugin would pick bf16 on a CPU with the units): against a float64 product, float32
    stays within 1e-5 of the largest entry, bf16 is about a thousand times further off."""
    expected = (dense_inputs().double() @ DenseProduct().weight.double()).numpy()
    got = np.asarray(dense_product(engine, tmp_path)(), dtype=np.float64)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_int8_is_measured_in_openvino_beside_pytorch_in_fp32() -> None:
    """PyTorch has no int8 path: its column is the fp32 baseline, and only the runtime that quantizes
    runs int8."""
    assert columns("int8") == {"torch": ("torch", "fp32"), "openvino int8": ("openvino", "int8")}


def test_the_int8_dense_product_is_quantized_and_close_to_float(tmp_path: Path) -> None:
    """The int8 rate is the runtime's int8 rate only if the product runs quantized: its relative RMS error
    is that of 8-bit operands, about 1.4% (the seeded operand spans some 10 of its RMS over 255 steps,
    each weight column some 7 over 254, each rounding adding step / sqrt(12)), far above float32's; AVX2's
    int8 path saturates a few large entries, which the RMS barely feels."""
    expected = (dense_inputs().double() @ DenseProduct().weight.double()).numpy()
    got = np.asarray(dense_product("openvino", tmp_path, "int8")(), dtype=np.float64)
    error = np.sqrt(((got - expected) ** 2).mean() / (expected**2).mean())
    assert 1e-3 < error < 0.03
