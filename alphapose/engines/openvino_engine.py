"""OpenVINO's CPU plugin for an exported network.

The compiled model gets its own settings (``INFERENCE_NUM_THREADS``: PyTorch's thread count; the
latency hint, one request at a time), on its own ``openvino.Core``: nothing process-wide changes.

Precision follows ``ALPHAPOSE_PRECISION`` through ``INFERENCE_PRECISION_HINT``: ``f32`` for fp32 (set
explicitly, since the plugin's default on a CPU with AMX or AVX512-BF16 is bf16), ``bf16`` and ``f16``
for bf16 and fp16. A reduced precision is refused rather than mislabelled where the plugin cannot run
it: on a CPU whose units it does not list in ``OPTIMIZATION_CAPABILITIES`` (it would quietly compute in
f32), and under an ``ONEDNN_MAX_CPU_ISA`` cap below that precision's instructions (the plugin chooses
the precision from the CPU itself, but its kernels follow the cap, so compiling fails on a layer with
no kernel, e.g. pooling).

int8 runs a model quantized post-training by NNCF (:func:`quantize`, the ``int8`` extra) from our export,
on the user's calibration inputs: mixed preset (symmetric per-channel weights, asymmetric activations),
with the plugin's hint at ``f32`` so the few layers left unquantized stay float32. The plugin lists
``INT8`` on every x86 CPU: with VNNI or AMX-INT8 its int8 kernels multiply at four times the fp32 rate,
on AVX2 alone they still ran faster than f32 under the AVX2 caps (bench/README.md), so int8 is refused
only where the plugin does not list it.

OpenVINO's ONNX reader has no conversion for ``DeformConv``, so networks with deformable convolutions
stay in PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import openvino
from torch import nn

from alphapose.engines.precision import Precision
from alphapose.errors import OptionError, install_hint
from alphapose.pose.models.resnet import DeformConv2d

# int8: the quantized layers run int8 whatever the hint; the hint is for the layers left in float
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
# The plugin's OPTIMIZATION_CAPABILITIES entry for each reduced precision.
CAPABILITIES = {"bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
# ONEDNN_MAX_CPU_ISA values below the first instruction set with each reduced precision's instructions.
CAPS_WITHOUT = {
    "bf16": ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"),
    "fp16": ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16"),
}
QUANTIZER = "nncf"  # the package that quantizes (the int8 extra)
QUANTIZER_PRESET = "mixed"  # nncf.QuantizationPreset.MIXED: symmetric weights, asymmetric activations
# The graph quantized is OpenVINO's conversion of the export (openvino.convert_model), whose fusions turn
# x * sigmoid(x) into one Swish: quantized as one activation, it runs fused into its convolution, where the
# ONNX graph read as it is leaves a float sigmoid and a re-quantized product after every convolution of
# YOLOX (docs/precision.md, "int8").
QUANTIZED_GRAPH = "openvino.convert_model"


def version() -> str:
    return openvino.__version__.split("-")[0]


def cannot_run(model: nn.Module) -> str | None:
    if any(isinstance(m, DeformConv2d) for m in model.modules()):
        return "deformable convolutions (its ONNX reader has no DeformConv)"
    return None


def capabilities() -> list[str]:
    """What the CPU plugin says it can run on this CPU (``BF16``, ``FP16``, ``FP32``, ...)."""
    return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def check_precision(precision: Precision) -> str | None:
    if precision.name == "fp32":
        return None
    listed = capabilities()
    if CAPABILITIES[precision.name] not in listed:
        return (
            f"openvino's CPU plugin cannot run {precision.name} on this CPU (it lists "
            f"{', '.join(listed)}) and would compute in float32; use precision fp32 (or auto)"
        )
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap in CAPS_WITHOUT.get(precision.name, ()):
        return (
            f"ONEDNN_MAX_CPU_ISA={cap} leaves openvino's CPU plugin no {precision.name} kernels; unset it, "
            "or use precision fp32 (or auto), or engine torch"
        )
    return None


def quantizer() -> dict[str, Any]:
    """What decides a quantized model besides the export and the inputs: the quantizer and its settings."""
    if find_spec(QUANTIZER) is None:
        raise OptionError(
            "precision",
            "int8",
            f"quantizing for int8 needs the {QUANTIZER} package: install it with {install_hint('int8')}",
        )
    import nncf

    return {
        "quantizer": f"{QUANTIZER} {nncf.__version__}",
        "preset": QUANTIZER_PRESET,
        "graph": QUANTIZED_GRAPH,
    }


def quantize(export: Path, target: Path, inputs: Sequence[np.ndarray]) -> None:
    """Quantize ``export`` (ONNX) on ``inputs`` (each one batch of the network's input) and save the int8
    model at ``target`` (``.xml`` and ``.bin``), its weights unconverted (``compress_to_fp16`` off)."""
    import nncf

    nncf.set_log_level(logging.ERROR)  # its notes are not the function's log
    # its progress bars go to standard error: standard output may be a caller's (a worker's answers)
    with contextlib.redirect_stdout(sys.stderr):
        model = nncf.quantize(
            openvino.convert_model(str(export)),
            nncf.Dataset(list(inputs)),
            subset_size=len(inputs),
            preset=nncf.QuantizationPreset.MIXED,
        )
    openvino.save_model(model, str(target), compress_to_fp16=False)


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
