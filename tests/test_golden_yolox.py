"""Our YOLOX detectors against outputs recorded from the official code (tests/golden/gen_yolox.py).

The weights are rebuilt here exactly as the generator wrote them (same writer, seed and calibration
photos), and our loader, letterbox, network and post-processing run on them.

Tolerances: the network input must be identical (SHA-256 of its pixels). The plain network (official
structure, batch norms unfolded) must agree to float32 rounding of other kernels: probabilities 1e-5
absolute, box coordinates in pixels 1e-4 relative + 1e-3 absolute, final boxes the same, scores 1e-5. The
folded channels-last inference form computes in another order, and a random network amplifies rounding
differences layer by layer (its activations grow on photos), so it gets probabilities 1e-3, raw box
coordinates 5e-3 relative + 0.05 px, final boxes 0.1 px and scores 1e-3; the boxes kept must be the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from alphapose.detection import FAMILIES, PersonDetector
from alphapose.detection.yolox import (
    Placement,
    expected_shapes,
    letterbox,
    load_yolox,
    select_persons,
)
from alphapose.models.yolox import BN_EPS, BN_MOMENTUM, VARIANTS, YOLOX
from tests.golden.gen_yolox import calibration_inputs, crowd_predictions, key_list_digest, load_view
from tools.synthetic_weights import write_synthetic_yolox

DATA = Path(__file__).parent / "golden" / "data"
MANIFEST = json.loads((DATA / "yolox_cases.json").read_text())
PHOTO_CASES = [
    (variant, view)
    for variant, case in MANIFEST["cases"].items()
    if variant != "crowd"
    for view in case["views"]
]


@dataclass(frozen=True)
class Tolerance:
    probability: float  # objectness and class scores, absolute
    box_rtol: float  # raw box coordinates in input pixels
    box_atol: float
    final_box: float  # final boxes in image pixels, absolute
    score: float  # score handed on, absolute


PLAIN = Tolerance(probability=1e-5, box_rtol=1e-4, box_atol=1e-3, final_box=1e-3, score=1e-5)
FOLDED = Tolerance(probability=1e-3, box_rtol=5e-3, box_atol=0.05, final_box=0.1, score=1e-3)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("yolox")


@cache
def weights_file(variant: str, tmp: Path) -> Path:
    """The case's synthetic weights, written as an official release file."""
    case = MANIFEST["cases"][variant]
    images = [load_view(view) for view in case["views"]]
    path = tmp / VARIANTS[variant].file_name
    calibration = calibration_inputs(images)
    return write_synthetic_yolox(path, variant, boxes="many", seed=case["seed"], calibration=calibration)


@cache
def network(variant: str, tmp: Path, folded: bool) -> YOLOX:
    """Our loader on that file: the plain network, or the pipeline's folded channels-last form."""
    model = load_yolox(weights_file(variant, tmp), fold_batch_norm=folded)
    return model.to(memory_format=torch.channels_last) if folded else model


def detect(model: YOLOX, view: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Our detector on a view (given RGB, as the pipeline holds images): raw predictions, boxes, scores."""
    rgb = np.ascontiguousarray(load_view(view)[:, :, ::-1])
    recorded: list[torch.Tensor] = []
    hook = model.register_forward_hook(lambda module, args, output: recorded.append(output))
    try:
        boxes, scores = PersonDetector(model, FAMILIES["yolox"], MANIFEST["input_size"])(rgb)
    finally:
        hook.remove()
    return recorded[0], boxes, scores


def assert_predictions_match(ours: torch.Tensor, variant: str, view: str, tol: Tolerance) -> None:
    assert ours.shape == (1, 8400, 85) and ours.dtype == torch.float32
    raw = np.load(DATA / f"yolox_{variant.removeprefix('yolox-')}_raw.npz")
    rows, expected = ours[0, raw["rows"]].numpy(), raw[f"{view}_rows"]
    np.testing.assert_allclose(rows[:, :4], expected[:, :4], rtol=tol.box_rtol, atol=tol.box_atol)
    np.testing.assert_allclose(rows[:, 4:], expected[:, 4:], rtol=0, atol=tol.probability)
    sums = ours[0].double().sum(dim=0).numpy()
    np.testing.assert_allclose(
        sums, raw[f"{view}_column_sums"], rtol=10 * tol.box_rtol, atol=10 * tol.box_atol
    )


def assert_detections_match(
    boxes: torch.Tensor, scores: torch.Tensor, expected: dict, tol: Tolerance
) -> None:
    assert boxes.dtype == torch.float32 and scores.dtype == torch.float32
    assert len(boxes) == len(expected["boxes"]), "number of person boxes"
    expected_boxes = np.asarray(expected["boxes"], np.float32).reshape(-1, 4)
    np.testing.assert_allclose(boxes.numpy().reshape(-1, 4), expected_boxes, rtol=0, atol=tol.final_box)
    np.testing.assert_allclose(scores.numpy(), expected["scores"], rtol=0, atol=tol.score)


def test_state_dict_keys_are_the_official_ones() -> None:
    recorded = json.loads((DATA / "yolox_state_dict.json").read_text())
    ours = [[key, list(shape)] for key, shape in expected_shapes(VARIANTS["yolox-s"]).items()]
    assert ours == recorded["yolox-s"]
    for name, digest in recorded["digests"].items():
        with torch.device("meta"):
            state = YOLOX(VARIANTS[name]).state_dict()
        assert key_list_digest(state) == digest, name
    assert recorded["batch_norm"] == {"eps": BN_EPS, "momentum": BN_MOMENTUM}


@pytest.mark.parametrize(("variant", "view"), PHOTO_CASES)
def test_network_input_is_the_official_one(variant: str, view: str) -> None:
    expected = MANIFEST["cases"][variant]["photos"][view]
    pixels, placement = letterbox(np.ascontiguousarray(load_view(view)[:, :, ::-1]))
    assert list(pixels.shape) == expected["input_shape"]
    assert hashlib.sha256(pixels.numpy().tobytes()).hexdigest() == expected["input_sha256"]
    assert placement.scale == expected["ratio"]


@pytest.mark.parametrize("folded", [False, True], ids=["plain", "folded-channels-last"])
@pytest.mark.parametrize(("variant", "view"), PHOTO_CASES)
def test_predictions_and_person_boxes_equal_the_official(
    variant: str, view: str, folded: bool, tmp: Path
) -> None:
    tol = FOLDED if folded else PLAIN
    predictions, boxes, scores = detect(network(variant, tmp, folded), view)
    assert_predictions_match(predictions, variant, view, tol)
    assert_detections_match(boxes, scores, MANIFEST["cases"][variant]["photos"][view], tol)


def test_crowd_is_nmsed_again_at_0_55_as_the_official() -> None:
    case = MANIFEST["cases"]["crowd"]
    assert case["boxes_after_first_nms"] > 100  # the case exercises the retry
    width, height = case["image_size"]
    boxes, scores = select_persons(crowd_predictions(case["seed"])[0])
    placement = Placement(size=MANIFEST["input_size"], scale=0.0, width=width, height=height)
    assert_detections_match(placement.to_image(boxes), scores, case, PLAIN)
