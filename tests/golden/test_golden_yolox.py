"""Our YOLOX detectors against outputs recorded from the official code (tests/golden/gen_yolox.py).

The weights are rebuilt exactly as the generator wrote them (same writer, seed, and calibration on the
official network inputs the fixture holds; tests/helpers/golden_yolox.py, which the engines' parity tests
share), and our loader, letterbox, network and post-processing run on them. Each stage starts from the
official values of the stage before it: our letterbox is compared with the official network input, our
network is fed the official input, our post-processing the official predictions. So OpenCV's resize,
which rounds some pixels the other way on other CPUs, can fail only the letterbox test, and only by more
than that rounding.

Tolerances: the letterbox's geometry exactly, its pixels exactly as this machine's OpenCV resizes with
the official filter and within one grey level of the official input. The network, plain or folded and
channels-last, within :func:`tests.golden.conditioning.tolerance` of the condition recorded per view
(float32 against float64 of the official network), the same for final boxes and scores; the same boxes
kept. Post-processing on the official predictions: 1e-3 px, scores exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from golden_yolox import (
    MANIFEST,
    Tolerance,
    assert_predictions_match,
    network,
    network_tolerance,
    official_input,
)
from repo_paths import GOLDEN_DATA

from alphapose.detection import yolox_net
from alphapose.detection.yolox import (
    CANVAS_VALUE,
    Placement,
    expected_shapes,
    letterbox,
    select_persons,
)
from alphapose.detection.yolox_net import BN_EPS, BN_MOMENTUM
from tests.golden.gen_yolox import crowd_predictions, key_list_digest, load_view

DATA = GOLDEN_DATA
PHOTO_CASES = [
    (variant, view)
    for variant, case in MANIFEST["cases"].items()
    if variant != "crowd"
    for view in case["views"]
]


EXACT = Tolerance(probability=0.0, box_rtol=0.0, box_atol=1e-3, final_box=1e-3, score=0.0)
# The official preproc resamples with OpenCV's bilinear filter (detector/yolox/utils/preprocess.py).
RESAMPLING = cv2.INTER_LINEAR
LETTERBOX_MAX_LEVELS = 1
LETTERBOX_MAX_FRACTION = 0.1  # of the pasted pixel values that may differ by one level


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("yolox")


def placement(view: str) -> Placement:
    height, width = load_view(view).shape[:2]
    return Placement(size=MANIFEST["input_size"], scale=0.0, width=width, height=height)


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
    ours = [[key, list(shape)] for key, shape in expected_shapes("yolox-s").items()]
    assert ours == recorded["yolox-s"]
    for name, digest in recorded["digests"].items():
        with torch.device("meta"):
            state = getattr(yolox_net, name.replace("-", "_"))().state_dict()  # each variant's builder
        assert key_list_digest(state) == digest, name
    assert recorded["batch_norm"] == {"eps": BN_EPS, "momentum": BN_MOMENTUM}


@pytest.mark.parametrize("shape", list(MANIFEST["paste_boxes"]))
def test_letterbox_places_the_image_where_the_official_does(shape: str) -> None:
    width, height = map(int, shape.split("x"))
    pixels = letterbox(np.zeros((height, width, 3), np.uint8))[0].numpy()
    rows, columns = np.nonzero(pixels[0] != CANVAS_VALUE)
    assert rows.min() == columns.min() == 0
    assert [rows.max() + 1, columns.max() + 1] == MANIFEST["paste_boxes"][shape]
    assert (pixels[:, rows.max() + 1 :] == CANVAS_VALUE).all()
    assert (pixels[:, :, columns.max() + 1 :] == CANVAS_VALUE).all()


@pytest.mark.parametrize("view", sorted({view for _, view in PHOTO_CASES}))
def test_network_input_is_the_official_one(view: str) -> None:
    image = load_view(view)
    pixels, place = letterbox(np.ascontiguousarray(image[:, :, ::-1]))
    expected = MANIFEST["cases"]["yolox-s"]["photos"][view]
    assert list(pixels.shape) == expected["input_shape"]
    assert place.scale == expected["ratio"]
    ours = pixels.numpy()
    # this machine's OpenCV with the official geometry and filter: the very same pixels
    height, width = MANIFEST["paste_boxes"][f"{image.shape[1]}x{image.shape[0]}"]
    resized = cv2.resize(image, (width, height), interpolation=RESAMPLING).transpose(2, 0, 1)
    np.testing.assert_array_equal(ours[:, :height, :width], resized)
    # the official input, resampled on the recording CPU: within that resampling's rounding
    difference = np.abs(ours.astype(np.int16) - official_input(view).astype(np.int16))
    assert difference.max() <= LETTERBOX_MAX_LEVELS
    assert np.count_nonzero(difference) <= LETTERBOX_MAX_FRACTION * resized.size


@pytest.mark.parametrize("folded", [False, True], ids=["plain", "folded-channels-last"])
@pytest.mark.parametrize(("variant", "view"), PHOTO_CASES)
def test_predictions_equal_the_official(variant: str, view: str, folded: bool, tmp: Path) -> None:
    """Our network on the official input: sampled rows, column sums and every row that can pass the
    threshold. (Which boxes pass is then the post-processing's, tested on the official rows: a decision
    within the network tolerance of a threshold may go either way on another CPU.)"""
    with torch.inference_mode():
        predictions = network(variant, tmp, folded)(torch.from_numpy(official_input(view))[None].float())
    raw = np.load(DATA / f"yolox_{variant.removeprefix('yolox-')}_raw.npz")
    tol = network_tolerance(variant, view, np.abs(raw[f"{view}_rows"][:, :4]).max())
    assert_predictions_match(predictions, variant, view, tol)
    candidates = predictions[0, raw[f"{view}_candidate_rows"]].numpy()
    expected = raw[f"{view}_candidates"]
    np.testing.assert_allclose(candidates[:, :4], expected[:, :4], rtol=0, atol=tol.box_atol)
    np.testing.assert_allclose(candidates[:, 4:], expected[:, 4:], rtol=0, atol=tol.probability)


@pytest.mark.parametrize(("variant", "view"), PHOTO_CASES)
def test_post_processing_of_the_official_predictions_gives_the_official_boxes(
    variant: str, view: str
) -> None:
    """Every official row that can pass the threshold, through our post-processing and mapping."""
    raw = np.load(DATA / f"yolox_{variant.removeprefix('yolox-')}_raw.npz")
    boxes, scores = select_persons(torch.from_numpy(raw[f"{view}_candidates"]))
    expected = MANIFEST["cases"][variant]["photos"][view]
    assert 0 < len(expected["boxes"]) < len(raw[f"{view}_candidates"])
    assert_detections_match(placement(view).to_image(boxes), scores, expected, EXACT)


def test_crowd_is_nmsed_again_at_0_55_as_the_official() -> None:
    case = MANIFEST["cases"]["crowd"]
    assert case["boxes_after_first_nms"] > 100  # the case exercises the retry
    width, height = case["image_size"]
    boxes, scores = select_persons(crowd_predictions(case["seed"])[0])
    placement = Placement(size=MANIFEST["input_size"], scale=0.0, width=width, height=height)
    assert_detections_match(placement.to_image(boxes), scores, case, EXACT)
