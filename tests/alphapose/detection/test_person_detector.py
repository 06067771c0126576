"""Letterbox geometry, person selection with the official NMS convention, and the detector end to end."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from alphapose.detection.darknet import YoloV3SPP
from alphapose.detection.person_detector import FAMILIES, PersonDetector
from alphapose.detection.yolov3 import Letterbox, letterbox, network_input, select_persons

HEADS = (88, 100, 112)


def prediction_rows(*boxes: dict) -> torch.Tensor:
    """(B, 85) rows from dicts with cx, cy, w, h, obj and optionally cls (best class) and score."""
    rows = torch.full((len(boxes), 85), 0.01)
    for row, box in zip(rows, boxes, strict=True):
        row[:5] = torch.tensor([box["cx"], box["cy"], box["w"], box["h"], box["obj"]])
        row[5 + box.get("cls", 0)] = box.get("score", 0.9)
    return rows


def square(x1: float, size: float = 19.0, obj: float = 0.9, y1: float = 0.0) -> dict:
    """A box whose x2 - x1 = y2 - y1 = size (so size + 1 wide in the official +1 convention)."""
    return {"cx": x1 + size / 2, "cy": y1 + size / 2, "w": size, "h": size, "obj": obj}


def official_selection(
    pred: torch.Tensor, confidence: float, nms_threshold: float, retry: bool = True
) -> tuple[np.ndarray, ...]:
    """The official write_results + CPU NMS, written out in float32 with a loop (the reference)."""
    p = pred.numpy().astype(np.float32)
    p = p[p[:, 4] > np.float32(confidence)]
    p = p[(p[:, 5:].argmax(axis=1) == 0) & (p[:, 5:].max(axis=1) != 0)]
    p = p[np.argsort(-p[:, 4], kind="stable")]
    half = np.float32(2)
    x1, y1 = p[:, 0] - p[:, 2] / half, p[:, 1] - p[:, 3] / half
    x2, y2 = p[:, 0] + p[:, 2] / half, p[:, 1] + p[:, 3] / half
    one = np.float32(1)
    areas = (x2 - x1 + one) * (y2 - y1 + one)

    def greedy(threshold: float) -> list[int]:
        limit = np.float32(threshold)
        suppressed = np.zeros(len(p), dtype=bool)
        keep = []
        for i in range(len(p)):
            if suppressed[i]:
                continue
            keep.append(i)
            w = np.maximum(np.float32(0), np.minimum(x2[i], x2) - np.maximum(x1[i], x1) + one)
            h = np.maximum(np.float32(0), np.minimum(y2[i], y2) - np.maximum(y1[i], y1) + one)
            inter = w * h
            overlap = inter / (areas[i] + areas - inter)
            later = np.arange(len(p)) > i
            suppressed |= later & (overlap >= limit)
        return keep

    keep = greedy(nms_threshold)
    if retry and len(keep) > 100:
        keep = greedy(nms_threshold - 0.05)
    return np.stack([x1, y1, x2, y2], axis=1)[keep], p[keep, 4]


# -- letterbox ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "size", "new_width", "new_height"),
    [(640, 480, 320, 320, 240), (500, 333, 608, 608, 404), (300, 600, 608, 304, 608), (64, 64, 64, 64, 64)],
)
def test_letterbox_places_the_resized_image_on_grey(
    width: int, height: int, size: int, new_width: int, new_height: int
) -> None:
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor, box = letterbox(image, size)
    assert tensor.shape == (3, size, size) and tensor.dtype == torch.uint8
    assert box == Letterbox(size=size, scale=min(size / width, size / height), width=width, height=height)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_CUBIC)
    inside = torch.from_numpy(resized.transpose(2, 0, 1).copy())
    assert torch.equal(tensor[:, top : top + new_height, left : left + new_width], inside)  # RGB order kept
    border = torch.ones(size, size, dtype=torch.bool)
    border[top : top + new_height, left : left + new_width] = False
    assert (tensor[:, border] == 128).all()


def test_letterbox_keeps_a_sliver_at_least_one_pixel_high() -> None:
    tensor, _ = letterbox(np.full((1, 2000, 3), 200, dtype=np.uint8), 64)  # int(1 * 0.032) would be 0 rows
    assert (tensor[:, 31] == 200).all()
    assert (tensor[:, 32] == 128).all()


def test_network_input_is_the_official_division_by_255() -> None:
    # the official float32 values: numpy uint8 -> float32 / 255 on the CPU, for every pixel value
    pixels = torch.arange(256, dtype=torch.uint8).repeat(3, 2, 1)
    expected = torch.from_numpy(pixels.numpy().astype(np.float32) / np.float32(255))
    values = network_input(pixels)
    assert values.dtype == torch.float32 and values.shape == pixels.shape
    assert torch.equal(values, expected)


def test_letterbox_rejects_what_is_not_an_rgb_uint8_image() -> None:
    with pytest.raises(ValueError, match="RGB uint8 HxWx3"):
        letterbox(np.zeros((10, 10, 3), dtype=np.float32), 64)
    with pytest.raises(ValueError, match="RGB uint8 HxWx3"):
        letterbox(np.zeros((10, 10), dtype=np.uint8), 64)


def test_to_image_uses_the_float_padding() -> None:
    """500x333 at 608: scale 1.216, pasted 404 rows high at row 102, unmapped with pad (608 - 404.928)/2."""
    box = Letterbox(size=608, scale=1.216, width=500, height=333)
    pad = (608 - 1.216 * 333) / 2
    mapped = box.to_image(
        torch.tensor([[0.0, pad, 608.0, pad + 1.216 * 333], [60.8, pad + 121.6, 121.6, 400.0]])
    )
    expected = torch.tensor([[0.0, 0.0, 500.0, 333.0], [50.0, 100.0, 100.0, (400.0 - pad) / 1.216]])
    torch.testing.assert_close(mapped, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize(("width", "height"), [(500, 333), (1920, 1080), (123, 457), (640, 640)])
def test_to_image_is_bit_identical_to_the_official_float32_steps(width: int, height: int) -> None:
    boxes = torch.rand(64, 4, generator=torch.Generator().manual_seed(width)) * 700 - 50
    dims = torch.tensor([[width, height, width, height]], dtype=torch.float32)
    factor = torch.min(608 / dims, 1)[0].view(-1, 1)
    expected = boxes.clone()
    expected[:, [0, 2]] -= (608 - factor * dims[:, 0].view(-1, 1)) / 2
    expected[:, [1, 3]] -= (608 - factor * dims[:, 1].view(-1, 1)) / 2
    expected /= factor
    expected[:, [0, 2]] = torch.clamp(expected[:, [0, 2]], 0.0, float(width))
    expected[:, [1, 3]] = torch.clamp(expected[:, [1, 3]], 0.0, float(height))
    placement = Letterbox(size=608, scale=min(608 / width, 608 / height), width=width, height=height)
    assert torch.equal(placement.to_image(boxes), expected)


def test_to_image_round_trips_boxes_and_clamps_to_the_image_size() -> None:
    image = np.zeros((123, 457, 3), dtype=np.uint8)
    _, box = letterbox(image, 320)
    rng = np.random.default_rng(1)
    corners = np.sort(rng.uniform(0, 1, (50, 2, 2)), axis=1) * np.array([457, 123])
    boxes = torch.tensor(corners.reshape(50, 4), dtype=torch.float32)  # x1, y1, x2, y2
    pad = torch.tensor([(320 - box.scale * 457) / 2, (320 - box.scale * 123) / 2] * 2, dtype=torch.float32)
    torch.testing.assert_close(box.to_image(boxes * box.scale + pad), boxes, rtol=0, atol=1e-3)
    outside = box.to_image(torch.tensor([[-40.0, -40.0, 400.0, 400.0]]))
    assert outside.tolist() == [[0.0, 0.0, 457.0, 123.0]]  # clamped to w and h, not w - 1


# -- select_persons ----------------------------------------------------------------------------------------


def test_objectness_threshold_is_strict() -> None:
    at = float(np.float32(0.1))
    above = float(np.nextafter(np.float32(0.1), np.float32(1)))
    boxes, scores = select_persons(prediction_rows(square(0, obj=at), square(100, obj=above)))
    assert scores.tolist() == [above]
    assert boxes.tolist() == [[100.0, 0.0, 119.0, 19.0]]


def test_only_rows_whose_best_class_is_person_are_kept() -> None:
    rows = prediction_rows(square(0, obj=0.99), square(100, obj=0.8), square(200, obj=0.7))
    rows[0, 5 + 16] = 0.95  # a dog: its high person score (0.9) does not help
    rows[1, 5 + 3] = 0.9  # tied with person: the first maximum wins, person
    rows[2, 5:] = 0.0  # all class scores 0: the official drops the row
    boxes, scores = select_persons(rows)
    assert scores.tolist() == [pytest.approx(0.8)]
    assert boxes.tolist() == [[100.0, 0.0, 119.0, 19.0]]


def test_nms_uses_the_plus_one_area_convention() -> None:
    # shifted by 4.9: plain IoU 14.1/23.9 = 0.590, with +1 widths 15.1/24.9 = 0.606
    _, scores = select_persons(prediction_rows(square(0, obj=0.9), square(4.9, obj=0.8)))
    assert scores.tolist() == [pytest.approx(0.9)]
    # shifted by 5.2: 14.8/25.2 = 0.587 even with +1
    _, scores = select_persons(prediction_rows(square(0, obj=0.9), square(5.2, obj=0.8)))
    assert scores.tolist() == [pytest.approx(0.9), pytest.approx(0.8)]


@pytest.mark.parametrize(("size", "shift", "threshold"), [(14.0, 5.0, 0.5), (19.0, 5.0, 0.6)])
def test_iou_equal_to_the_threshold_is_suppressed(size: float, shift: float, threshold: float) -> None:
    # +1 IoU (size + 1 - shift) / (size + 1 + shift): exactly 1/2 and 3/5
    pair = prediction_rows(square(0, size, obj=0.9), square(shift, size, obj=0.8))
    _, scores = select_persons(pair, nms_threshold=threshold)
    assert len(scores) == 1
    apart = prediction_rows(square(0, size, obj=0.9), square(shift + 0.01, size, obj=0.8))
    _, scores = select_persons(apart, nms_threshold=threshold)
    assert len(scores) == 2


@pytest.mark.parametrize(("count", "kept"), [(100, 100), (101, 51)])
def test_nms_is_redone_at_threshold_minus_005_above_100_boxes(count: int, kept: int) -> None:
    # neighbours 5.5 apart: +1 IoU 14.5/25.5 = 0.569, kept at 0.6, suppressed at 0.55; next-but-one 0.29
    rows = prediction_rows(*(square(5.5 * k, obj=0.9 - 0.001 * k) for k in range(count)))
    boxes, _ = select_persons(rows)
    assert len(boxes) == kept
    step = 1 if kept == count else 2
    assert boxes[:, 0].tolist() == [5.5 * k for k in range(0, count, step)]


def test_output_is_sorted_by_objectness_and_ties_keep_row_order() -> None:
    rows = prediction_rows(
        square(0, obj=0.3),
        square(100, obj=0.7),
        square(200, obj=0.5),
        square(300, obj=0.7),
        square(304, obj=0.7),  # overlaps the previous row (IoU 0.67) and ties with it: the earlier row wins
    )
    boxes, scores = select_persons(rows)
    assert boxes[:, 0].tolist() == [100.0, 300.0, 200.0, 0.0]
    assert scores.tolist() == pytest.approx([0.7, 0.7, 0.5, 0.3])
    assert boxes.dtype == scores.dtype == torch.float32


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_matches_the_official_procedure_on_random_rows(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    n = 800
    pred = torch.rand(n, 85, generator=generator)
    pred[:, 0:2] *= 320
    pred[:, 2:4] = 8 + pred[:, 2:4] * 120
    pred[:, 5] *= 1.3  # about half the rows are persons
    boxes, scores = select_persons(pred, confidence=0.1, nms_threshold=0.6)
    expected_boxes, expected_scores = official_selection(pred, 0.1, 0.6)
    assert len(scores) > 10
    assert torch.equal(scores, torch.from_numpy(expected_scores))
    assert torch.equal(boxes, torch.from_numpy(expected_boxes))


def test_the_retry_matches_the_official_procedure_on_crowded_rows() -> None:
    generator = torch.Generator().manual_seed(3)
    pred = torch.rand(3000, 85, generator=generator)
    pred[:, 0:2] *= 600
    pred[:, 2:4] = 20 + pred[:, 2:4] * 20
    pred[:, 5] = 2.0
    boxes, scores = select_persons(pred)
    expected_boxes, expected_scores = official_selection(pred, 0.1, 0.6)
    first_pass, _ = official_selection(pred, 0.1, 0.6, retry=False)
    assert len(first_pass) > len(scores) > 100  # the retry ran and still left more than 100
    assert torch.equal(scores, torch.from_numpy(expected_scores))
    assert torch.equal(boxes, torch.from_numpy(expected_boxes))


def test_no_candidates_give_empty_results() -> None:
    boxes, scores = select_persons(torch.zeros(50, 85))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


# -- PersonDetector ----------------------------------------------------------------------------------------


class RecordingModel(nn.Module):
    """Stands in for YOLOv3-SPP: returns fixed rows and records its inputs."""

    def __init__(self, rows: torch.Tensor, input_size: int = 64) -> None:
        super().__init__()
        self.input_size = input_size
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.rows = rows
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return self.rows.expand(len(x), -1, -1)


def test_detector_maps_boxes_back_to_image_pixels() -> None:
    # 100x50 at 64: scale 0.64, pasted 64x32 at row 16; box (16, 24)-(48, 40) maps to (25, 12.5)-(75, 37.5)
    model = RecordingModel(prediction_rows({"cx": 32, "cy": 32, "w": 32, "h": 16, "obj": 0.8}))
    model.train()
    image = np.random.default_rng(2).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    boxes, scores = PersonDetector(model, FAMILIES["yolov3"], model.input_size)(image)
    assert not model.training
    torch.testing.assert_close(boxes, torch.tensor([[25.0, 12.5, 75.0, 37.5]]))
    assert scores.tolist() == [pytest.approx(0.8)]
    assert boxes.dtype == scores.dtype == torch.float32 and boxes.device.type == "cpu"
    assert torch.equal(model.inputs[0], network_input(letterbox(image, 64)[0][None]))


def test_detect_batch_runs_one_forward_and_equals_single_calls() -> None:
    model = RecordingModel(prediction_rows({"cx": 32, "cy": 32, "w": 20, "h": 30, "obj": 0.8}))
    detector = PersonDetector(model, FAMILIES["yolov3"], model.input_size)
    images = [np.zeros((50, 100, 3), dtype=np.uint8), np.zeros((90, 30, 3), dtype=np.uint8)]
    batch = detector.detect_batch(images)
    assert len(model.inputs) == 1 and model.inputs[0].shape == (2, 3, 64, 64)
    for image, (boxes, scores) in zip(images, batch, strict=True):
        single_boxes, single_scores = detector(image)
        assert torch.equal(boxes, single_boxes) and torch.equal(scores, single_scores)
    assert not torch.equal(batch[0][0], batch[1][0])
    assert detector.detect_batch([]) == []


def one_person_model(person: bool) -> YoloV3SPP:
    """The real network; the coarse head's first anchor predicts a huge person box everywhere (score 0.8)."""
    model = YoloV3SPP(64)
    with torch.no_grad():
        for index in HEADS:
            conv = model.module_list[index][0]
            conv.weight.zero_()
            bias = conv.bias.view(3, 85)
            bias.fill_(-20.0)
            bias[:, 0:2] = 0.0
            bias[:, 5] = 5.0
            if person and index == HEADS[0]:
                bias[0, 2:4] = math.log(1000.0)
                bias[0, 4] = math.log(0.8 / 0.2)
    return model


def test_detector_on_the_real_network_finds_the_whole_image_person() -> None:
    image = np.full((60, 90, 3), 77, dtype=np.uint8)
    boxes, scores = PersonDetector(one_person_model(True), FAMILIES["yolov3"], 64)(image)
    assert boxes.tolist() == [[0.0, 0.0, 90.0, 60.0]]
    assert scores.tolist() == [pytest.approx(0.8)]
    boxes, scores = PersonDetector(one_person_model(False), FAMILIES["yolov3"], 64)(image)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
