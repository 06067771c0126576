"""How strongly a fixture's network amplifies float32 rounding, and the tolerances that follow from it.

Every generator that records a network's outputs runs the official network a second time in float64
(weights and input cast, same code) and records the *condition* of the draw: the largest difference
between the official float32 and float64 outputs, relative to the largest float64 output. That is how
far float32 rounding alone moves this network on this input. Another correct float32 implementation
(other kernels, another CPU's instruction set, batch norms folded, channels-last) differs from the
official float32 result by about as much as either differs from float64, so the tests allow
:data:`FACTOR` times the recorded figure, never a figure measured on one machine.

A random network can be chaotic (a deformable convolution with large offsets is): then float32 rounding
moves its outputs by percent and no tolerance both carries to another CPU and catches a real change.
The generators refuse such a draw (:func:`accept`) rather than record it. A real change (layout,
normalisation, channel order, a constant, an off-by-one) moves outputs by orders of magnitude more than
:data:`FACTOR` x :data:`LIMIT`.
"""

from __future__ import annotations

import numpy as np

FACTOR = 20.0
"""Tolerance = FACTOR x recorded condition x output scale: our float32 results differ from the official
ones by a few times the recorded condition on the recording CPU and under the AVX2 caps (the ratios are in
tests/golden/README.md), so 20 leaves a margin."""
LIMIT = 5e-4
"""The largest condition a generator records; above it, choose other seeded weights."""
FLOOR = 1e-6
"""Conditions below this (a network float32 computes almost exactly) count as this much: one rounding of
the output and of each kernel's accumulation is always there."""


def condition(float32: np.ndarray, float64: np.ndarray) -> float:
    """max |float32 - float64| / max |float64|, over all outputs."""
    reference = np.asarray(float64, dtype=np.float64)
    scale = float(np.abs(reference).max())
    if scale == 0.0:
        raise ValueError("all reference outputs are zero: the condition is not defined")
    return float(np.abs(np.asarray(float32, dtype=np.float64) - reference).max() / scale)


def accept(value: float, what: str) -> float:
    """``value`` when the draw is well conditioned; otherwise stop the generator naming the fixture."""
    if not np.isfinite(value) or value > LIMIT:
        raise SystemExit(
            f"{what}: float32 and float64 outputs of the official network differ by {value:.2e} of their "
            f"range (limit {LIMIT:.0e}): an ill-conditioned draw; choose another seed or smaller weights"
        )
    return value


def tolerance(recorded: float, scale: float) -> float:
    """Absolute tolerance on outputs of magnitude up to ``scale`` for a fixture of condition ``recorded``."""
    return FACTOR * max(float(recorded), FLOOR) * float(scale)
