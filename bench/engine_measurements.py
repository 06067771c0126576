"""The measurements ``python -m bench.engines`` makes, in one table that it runs and bench/report.py renders.

Each row is a key of the results JSON, its title in the report (and in the run's log), the environment
its workers start with and the precision they run in. The table's order is the report's and ``--only``'s;
the runs that quantize go first (:func:`run_order`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tools.isa import AVX2_CAPS

REDUCED = "bf16"  # the reduced precision measured beside fp32 where the CPU has its units
INT8 = "int8"


@dataclass(frozen=True)
class Measurement:
    key: str
    title: str
    environ: Mapping[str, str] = field(default_factory=dict)
    precision: str = "fp32"


MEASUREMENTS = (
    Measurement("native", "native instruction set"),
    Measurement("avx2_caps", "under the AVX2 caps", AVX2_CAPS),
    Measurement("one_thread", "one thread per worker, native instruction set", {"OMP_NUM_THREADS": "1"}),
    Measurement(REDUCED, f"{REDUCED} beside torch in fp32, native instruction set", precision=REDUCED),
    Measurement(INT8, f"{INT8} beside torch in fp32, native instruction set", precision=INT8),
    Measurement(f"{INT8}_avx2_caps", f"{INT8} beside torch in fp32, under the AVX2 caps", AVX2_CAPS, INT8),
)
KEYS = tuple(m.key for m in MEASUREMENTS)


def run_order() -> list[Measurement]:
    """The int8 measurements first: their workers quantize, the step most likely to stop a run."""
    return sorted(MEASUREMENTS, key=lambda m: m.precision != INT8)
