"""The benchmarks users run: ``python -m bench`` (latency), ``bench.engines``, ``bench.video``,
``bench.annotate``, ``bench.load``, ``bench.soak`` and ``bench.tracking`` (bench/README.md says what each
measures).

The stand-ins they share with the tests live with the tests (the local server in a subprocess, the stub
CVAT server, synthetic photos and person boxes), so the tests import nothing from here.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))
