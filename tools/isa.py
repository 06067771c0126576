"""The variables that make an AVX-512 machine compute as an AVX2-only x86-64 CPU (AMD EPYC Zen 3 and the
like): one table for `make test-isa` / `make test-avx2` and for `bench.engines`' capped measurement.

Each library is capped through its own variable: PyTorch's kernels (``ATEN_CPU_CAPABILITY``), oneDNN
(``ONEDNN_MAX_CPU_ISA``, which OpenVINO's CPU plugin reads too), MKL, OpenCV's dispatch and its IPP, and
NumPy's dispatch. The OpenCV names are those its 5.0 build knows (``AVX512-SKX``, with a hyphen: it
refuses ``AVX512_SKX`` as unknown); with them ``cv2.getCPUFeaturesLine()`` marks ``AVX512-SKX?``.

    python -m tools.isa    # the caps as shell assignments, for ``env $(python -m tools.isa) COMMAND``
"""

from __future__ import annotations

import shlex

AVX2_CAPS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX,AVX512-COMMON,AVX512-CLX,AVX512-CNL,AVX512-ICL",
    "OPENCV_IPP": "disabled",
    # Commas, which NumPy takes as it takes spaces: no value holds a space, so ``env $(...)`` splits
    # the assignments as the shell would parse them.
    "NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR",
}


def shell_assignments(caps: dict[str, str]) -> str:
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in caps.items())


if __name__ == "__main__":
    print(shell_assignments(AVX2_CAPS))
