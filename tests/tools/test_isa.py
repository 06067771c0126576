"""The AVX2 caps (tools/isa.py) take effect in every library they name: a name a library does not know
would leave its AVX-512 code running under `make test-isa` without a word."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from repo_paths import REPO

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


def test_the_shell_form_sets_every_cap_as_the_readme_and_make_pass_it_to_env() -> None:
    """``env $(python -m tools.isa) COMMAND``: the command substitution is split on blanks and not parsed
    for quotes, so a value holding a space would break it."""
    show_env = "import json, os; print(json.dumps(dict(os.environ)))"
    for line in (f'env $("{sys.executable}" -m tools.isa)', f"env {shell_assignments(AVX2_CAPS)}"):
        result = subprocess.run(
            ["bash", "-c", f'{line} "{sys.executable}" -c "{show_env}"'],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert {name: seen.get(name) for name in AVX2_CAPS} == AVX2_CAPS
