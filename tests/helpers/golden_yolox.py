"""The golden YOLOX case shared by the golden YOLOX tests and the engines' parity tests: the recorded
manifest, the official network inputs, our loader on the synthetic weights rebuilt exactly as
tests/golden/gen_yolox.py wrote them (same writer, seed, and calibration on the official inputs), and the
comparison of raw predictions with the official ones within the tolerances the recorded conditions give."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from repo_paths import GOLDEN_DATA

from alphapose.detection.detectors import DETECTORS
from alphapose.detection.yolox import load_yolox
from alphapose.detection.yolox_net import YOLOX
from tests.golden import conditioning
from tests.golden.gen_yolox import calibration_inputs
from tools.synthetic_weights import write_synthetic_yolox

MANIFEST = json.loads((GOLDEN_DATA / "yolox_cases.json").read_text())


@dataclass(frozen=True)
class Tolerance:
    probability: float  # objectness and class scores, absolute
    box_rtol: float  # raw box coordinates in input pixels
    box_atol: float
    final_box: float  # final boxes in image pixels, absolute
    score: float  # score handed on, absolute


def network_tolerance(variant: str, view: str, scale: float) -> Tolerance:
    """The tolerances that follow from the view's recorded condition; ``scale``: largest box value."""
    photo = MANIFEST["cases"][variant]["photos"][view]
    box = conditioning.tolerance(photo["condition_xywh"], scale)
    probability = conditioning.tolerance(photo["condition_probability"], 1.0)
    return Tolerance(probability=probability, box_rtol=0.0, box_atol=box, final_box=box, score=probability)


@cache
def official_input(view: str) -> np.ndarray:
    """The official network input of a view: (3, 640, 640) uint8 BGR."""
    with np.load(GOLDEN_DATA / "yolox_inputs.npz") as inputs:
        return inputs[view]


@cache
def weights_file(variant: str, tmp: Path) -> Path:
    """The case's synthetic weights, written as an official release file."""
    case = MANIFEST["cases"][variant]
    path = tmp / DETECTORS[variant].weights.name
    calibration = calibration_inputs([official_input(view) for view in case["views"]])
    return write_synthetic_yolox(path, variant, boxes="many", seed=case["seed"], calibration=calibration)


@cache
def network(variant: str, tmp: Path, folded: bool) -> YOLOX:
    """Our loader on that file: the plain network, or the pipeline's folded channels-last form."""
    model = load_yolox(weights_file(variant, tmp), fold_batch_norm=folded)
    return model.to(memory_format=torch.channels_last) if folded else model


def assert_predictions_match(ours: torch.Tensor, variant: str, view: str, tol: Tolerance) -> None:
    assert ours.shape == (1, 8400, 85) and ours.dtype == torch.float32
    raw = np.load(GOLDEN_DATA / f"yolox_{variant.removeprefix('yolox-')}_raw.npz")
    rows, expected = ours[0, raw["rows"]].numpy(), raw[f"{view}_rows"]
    np.testing.assert_allclose(rows[:, :4], expected[:, :4], rtol=tol.box_rtol, atol=tol.box_atol)
    np.testing.assert_allclose(rows[:, 4:], expected[:, 4:], rtol=0, atol=tol.probability)
    sums = ours[0].double().sum(dim=0).numpy()
    # a sum over 8,400 rows: each row within the tolerance, most errors of either sign
    np.testing.assert_allclose(sums[:4], raw[f"{view}_column_sums"][:4], rtol=0, atol=100 * tol.box_atol)
    np.testing.assert_allclose(sums[4:], raw[f"{view}_column_sums"][4:], rtol=0, atol=100 * tol.probability)
