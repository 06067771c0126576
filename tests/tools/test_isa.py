"""The AVX2 caps (tools/isa.py) take effect in every library they name: a name a library does not know
would leave its AVX-512 code running under `make test-isa` without a word."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tools.isa import AVX2_CAPS, shell_assignments

PROBE = """
import json, cv2, numpy, torch
from numpy._core._multiarray_umath import __cpu_features__, __cpu_dispatch__
features = cv2.getCPUFeaturesLine().split()
print(json.dumps({
    "torch": torch.backends.cpu.get_cpu_capability(),
    "opencv_avx512": [f for f in features if f.lstrip("*").startswith("AVX512") and not f.endswith("?")],
    "ipp": cv2.ipp.useIPP(),
    "numpy_avx512": [
        f for f in __cpu_dispatch__ if f.startswith(("X86_V4", "AVX512")) and __cpu_features__.get(f)
    ],
}))
"""


def test_every_library_runs_at_most_avx2_under_the_caps() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **AVX2_CAPS},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "unknown CPU feature" not in result.stderr
    seen = json.loads(result.stdout)
    assert seen["torch"] in ("AVX2", "DEFAULT")
    assert seen["opencv_avx512"] == []  # dispatched AVX-512 features are marked "?" (disabled)
    assert seen["ipp"] is False
    assert seen["numpy_avx512"] == []


def test_the_shell_form_is_what_make_passes_to_env() -> None:
    line = shell_assignments(AVX2_CAPS)
    assert "NPY_DISABLE_CPU_FEATURES='X86_V4 AVX512_ICL AVX512_SPR'" in line
    assert line.split()[0] == "ATEN_CPU_CAPABILITY=avx2"
