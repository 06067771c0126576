"""OpenVINO's CPU plugin for an exported network.

The compiled model gets its own settings (``INFERENCE_NUM_THREADS``: PyTorch's thread count; the
latency hint, one request at a time), on its own ``openvino.Core``: nothing process-wide changes.

Precision follows ``ALPHAPOSE_PRECISION`` through ``INFERENCE_PRECISION_HINT``: ``f32`` for fp32 (set
explicitly, since the plugin's default on a CPU with AMX or AVX512-BF16 is bf16), ``bf16`` and ``f16``
for bf16 and fp16, which the plugin runs on AVX512-BF16 / AMX (AVX512-FP16 / AMX-FP16) units; the
function refuses them on CPUs without those units, as for PyTorch
(:func:`alphapose.precision.require_cpu_units`).

OpenVINO's ONNX reader has no conversion for ``DeformConv``, so networks with deformable convolutions
stay in PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino
from torch import nn

from alphapose.models.resnet import DeformConv2d
from alphapose.precision import Precision

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def version() -> str:
    return openvino.__version__.split("-")[0]


def cannot_run(model: nn.Module) -> str | None:
    if any(isinstance(m, DeformConv2d) for m in model.modules()):
        return "deformable convolutions (its ONNX reader has no DeformConv)"
    return None


def check_precision(precision: Precision) -> str | None:
    return None


def compile_export(path: Path, precision: Precision, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision.name],
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()

    def run(inputs: np.ndarray) -> np.ndarray:
        # the request's output tensor is reused by the next call: hand back a copy
        return np.array(request.infer({0: inputs})[0], copy=True)

    return run
