"""YOLOv3-SPP against outputs recorded from the official Darknet port and YOLODetector (tests/golden).

The seeded weights are rebuilt here, written in the darknet format and read by our loader; the fixture
holds what the official code computed from the same file and photo (tests/golden/gen_yolov3.py).

Each stage starts from the official values of the stage before it: the letterbox is compared with the
official network input, the network is fed the official network input, the post-processing the official
raw predictions. So OpenCV's bicubic resize, which takes other SIMD and IPP paths on other CPUs and
rounds some pixels the other way, can fail only the letterbox test, and only by more than that rounding.
Network tolerances come from the condition recorded with the fixture (tests/golden/conditioning.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from repo_paths import GOLDEN_DATA

from alphapose.detection.yolov3 import CANVAS_VALUE, Letterbox, letterbox, network_input, select_persons
from alphapose.weights.load import load_detector
from tests.golden import conditioning, seeded
from tests.golden.gen_yolov3 import (
    BAND,
    CONFIDENCE,
    DETECT_SIZE,
    FIXTURE,
    GEOMETRY_SHAPES,
    NMS_THRESHOLD,
    PHOTO,
    RAW_SIZE,
)

# The official letterbox resamples with OpenCV's bicubic filter (detector/yolo/preprocess.py). Other CPUs'
# kernels round a pixel to the neighbouring grey level now and then; a wrong filter, scale or offset
# changes most pixels, by many levels.
RESAMPLING = cv2.INTER_CUBIC
LETTERBOX_MAX_LEVELS = 1
LETTERBOX_MAX_FRACTION = 0.1  # of the pasted pixel values that may differ by one level (4.5 % seen)
# Post-processing on the official predictions: the same float32 arithmetic on the same values.
BOX_ATOL, SCORE_ATOL = 1e-3, 0.0


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DATA / FIXTURE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded.write_detector_weights(tmp_path_factory.mktemp("golden_yolo"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def official_input(golden: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """The recorded official network input as the float32 batch our network takes."""
    return network_input(torch.from_numpy(golden[name]).permute(2, 0, 1)[None])


def assert_rows_close(ours: torch.Tensor, official: np.ndarray, golden: dict, size: int) -> None:
    """Box columns and probability columns, each within the tolerance of the fixture's condition."""
    ours_np = ours.float().cpu().numpy()
    xywh = conditioning.tolerance(golden[f"condition_{size}_xywh"], np.abs(official[:, :4]).max())
    probability = conditioning.tolerance(golden[f"condition_{size}_probability"], 1.0)
    np.testing.assert_allclose(ours_np[:, :4], official[:, :4], rtol=0, atol=xywh)
    np.testing.assert_allclose(ours_np[:, 4:], official[:, 4:], rtol=0, atol=probability)


@pytest.mark.parametrize("size", [RAW_SIZE, DETECT_SIZE])
@pytest.mark.parametrize("shape", GEOMETRY_SHAPES, ids=[f"{w}x{h}" for w, h in GEOMETRY_SHAPES])
def test_letterbox_places_the_image_where_the_official_does(
    shape: tuple[int, int], size: int, golden: dict[str, np.ndarray]
) -> None:
    black = np.zeros((shape[1], shape[0], 3), np.uint8)
    canvas = letterbox(black, size)[0].permute(1, 2, 0).numpy()
    rows, columns = np.nonzero(canvas[:, :, 0] != CANVAS_VALUE)
    placed = [rows.min(), columns.min(), np.ptp(rows) + 1, np.ptp(columns) + 1]
    assert (
        placed
        == golden["paste_boxes"][GEOMETRY_SHAPES.index(shape), [RAW_SIZE, DETECT_SIZE].index(size)].tolist()
    )
    outside = np.ones(canvas.shape[:2], bool)
    outside[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1] = False
    assert (canvas[outside] == CANVAS_VALUE).all()


@pytest.mark.parametrize(
    ("name", "size", "band"),
    [
        ("letterbox_160", RAW_SIZE, False),
        ("letterbox_608", DETECT_SIZE, False),
        ("letterbox_band_160", RAW_SIZE, True),
    ],
)
def test_letterbox_pixels_are_the_official_resampling(
    name: str, size: int, band: bool, photo: np.ndarray, golden: dict[str, np.ndarray]
) -> None:
    image = np.ascontiguousarray(photo[BAND[0] : BAND[1]]) if band else photo
    ours = letterbox(image, size)[0].permute(1, 2, 0).numpy()
    # this machine's OpenCV with the official geometry and filter: the very same pixels
    top, left, height, width = golden["paste_boxes"][
        GEOMETRY_SHAPES.index(image.shape[1::-1]), [RAW_SIZE, DETECT_SIZE].index(size)
    ]
    resized = cv2.resize(image, (int(width), int(height)), interpolation=RESAMPLING)
    np.testing.assert_array_equal(ours[top : top + height, left : left + width], resized)
    # the official pixels, resampled on the recording CPU: within that resampling's rounding
    difference = np.abs(ours.astype(np.int16) - golden[name].astype(np.int16))
    assert difference.max() <= LETTERBOX_MAX_LEVELS
    assert np.count_nonzero(difference) <= LETTERBOX_MAX_FRACTION * resized.size


def test_raw_predictions_match_the_official_network(weights: Path, golden: dict[str, np.ndarray]) -> None:
    model = load_detector(weights, RAW_SIZE)
    with torch.inference_mode():
        raw = model(official_input(golden, "letterbox_160"))[0]
    assert raw.shape == golden["raw_160"].shape
    assert_rows_close(raw, golden["raw_160"], golden, RAW_SIZE)


def test_detection_network_matches_the_official_one(weights: Path, golden: dict[str, np.ndarray]) -> None:
    """The detector as the pipeline builds it (folded batch norms, channels-last) at the official 608, on
    every row that passed the threshold in the official run. (Which rows pass is the post-processing's,
    tested below on the official rows: an objectness within the network tolerance of the threshold may
    go either way on another CPU.)"""
    model = load_detector(weights, DETECT_SIZE, fold_batch_norm=True).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        raw = model(official_input(golden, "letterbox_608"))[0]
    assert_rows_close(raw[golden["candidate_rows_608"]], golden["candidates_608"], golden, DETECT_SIZE)
    others = np.delete(raw[:, 4].numpy(), golden["candidate_rows_608"])
    assert others.max() <= CONFIDENCE + conditioning.tolerance(golden["condition_608_probability"], 1.0)


def test_post_processing_of_the_official_predictions_gives_the_official_boxes(
    golden: dict[str, np.ndarray],
) -> None:
    """Threshold, person filter, order, NMS with suppression and the mapping, on the official raw rows
    (every row above the threshold: the rows below it cannot reach the result)."""
    boxes, scores = select_persons(torch.from_numpy(golden["candidates_608"]), CONFIDENCE, NMS_THRESHOLD)
    assert len(golden["boxes"]) < len(golden["candidates_608"]), "the fixture should exercise NMS suppression"
    assert boxes.shape == golden["boxes"].shape
    np.testing.assert_allclose(
        photo_placement().to_image(boxes).numpy(), golden["boxes"], rtol=0, atol=BOX_ATOL
    )
    np.testing.assert_allclose(scores.numpy(), golden["scores"], rtol=0, atol=SCORE_ATOL)


def photo_placement() -> Letterbox:
    """Where the 512x512 photo sits in the 608 input (the official geometry, tested above)."""
    height, width = cv2.imread(str(PHOTO)).shape[:2]
    return Letterbox(
        size=DETECT_SIZE, scale=min(DETECT_SIZE / width, DETECT_SIZE / height), width=width, height=height
    )
