"""ONNX Runtime's CPU execution provider for an exported network.

Threads: ``intra_op_num_threads`` is PyTorch's thread count (what :func:`alphapose.engines.threads.
configure_cpu_threads` chose), one inter-op thread, and no spinning between runs: the pipeline's own
pre- and post-processing run on the same cores right after each forward. Everything is set on the
session's own options; nothing process-wide changes.

Precision: the CPU provider computes convolutions in float32 only. Its one reduced-precision switch,
``mlas.enable_gemm_fastmath_arm64_bfloat16``, exists for Arm64 CPUs alone, so bf16 and fp16 are refused
on this engine rather than silently run in float32. int8 is OpenVINO's here (a quantized export of ONNX
Runtime's own would be a second calibration path for the same networks), so it is refused too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
from torch import nn

from alphapose.engines.precision import Precision


def version() -> str:
    return onnxruntime.__version__


def cannot_run(model: nn.Module) -> str | None:
    """Every layer of our networks has an ONNX Runtime CPU kernel (``DeformConv`` since opset 19)."""
    return None


def check_precision(precision: Precision) -> str | None:
    if precision.name == "fp32":
        return None
    return (
        f"onnxruntime computes in float32 only on x86 CPUs, so precision {precision.name} cannot run on it; "
        "use precision fp32 (or auto), or engine openvino (bf16, int8) or torch (bf16)"
    )


def compile_export(path: Path, precision: Precision, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (output,) = (o.name for o in session.get_outputs())
    (name,) = (i.name for i in session.get_inputs())

    def run(inputs: np.ndarray) -> np.ndarray:
        return session.run([output], {name: inputs})[0]

    return run
