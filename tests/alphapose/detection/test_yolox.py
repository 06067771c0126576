"""YOLOX detector units: letterbox geometry, person selection, loading, synthetic weights, folding.

Parity with the official code is in test_golden_yolox.py; these pin the pieces down one by one.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from alphapose.detection.builders import BUILDERS
from alphapose.detection.detectors import DETECTORS, detector_for_file, get_detector
from alphapose.detection.person_detector import FAMILIES, PersonDetector
from alphapose.detection.yolox import (
    CANVAS_VALUE,
    Placement,
    letterbox,
    load_yolox,
    read_yolox_checkpoint,
    select_persons,
    yolox_detectors,
)
from alphapose.detection.yolox_net import YoloxScale, yolox_l, yolox_m, yolox_s, yolox_tiny, yolox_x
from alphapose.engines.fuse import fold_batch_norms
from alphapose.errors import WeightsError
from tools.synthetic_weights import write_synthetic_yolox


@pytest.mark.parametrize(
    ("height", "width", "new_height", "new_width"),
    [
        (480, 640, 480, 640),  # fits exactly in width
        (400, 600, 426, 640),  # enlarged: r = 640 / 600
        (720, 1280, 360, 640),  # reduced by 2
        (720, 360, 640, 320),  # portrait: height decides
        (3, 2000, 1, 640),  # a side that would round to 0 keeps 1 pixel
    ],
)
def test_letterbox_scales_to_fit_and_pastes_top_left(
    height: int, width: int, new_height: int, new_width: int
) -> None:
    image = np.full((height, width, 3), (10, 20, 30), dtype=np.uint8)
    pixels, placement = letterbox(image)
    assert pixels.shape == (3, 640, 640) and pixels.dtype == torch.uint8
    assert placement == Placement(size=640, scale=min(640 / height, 640 / width), width=width, height=height)
    # BGR, as OpenCV reads the frame the official detector is given
    assert pixels[:, :new_height, :new_width].reshape(3, -1).unique(dim=1).tolist() == [[30], [20], [10]]
    assert (pixels[:, new_height:, :] == CANVAS_VALUE).all() and (
        pixels[:, :, new_width:] == CANVAS_VALUE
    ).all()


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)]
)
def test_letterbox_refuses_what_is_not_an_image(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image"):
        letterbox(bad)


def test_boxes_map_back_by_the_resize_factor_and_clamp_to_the_image() -> None:
    placement = letterbox(np.zeros((400, 600, 3), np.uint8))[1]
    inside = torch.tensor([[0.0, 0.0, 640.0, 426.0], [64.0, 32.0, 128.0, 96.0]])
    np.testing.assert_allclose(
        placement.to_image(inside), [[0, 0, 600, 399.375], [60, 30, 120, 90]], rtol=1e-6
    )
    outside = torch.tensor([[-10.0, -5.0, 700.0, 500.0]])
    assert placement.to_image(outside).tolist() == [[0.0, 0.0, 600.0, 400.0]]


def _rows(*rows: tuple[float, float, float, float, float, float, float]) -> torch.Tensor:
    """Prediction rows from (cx, cy, w, h, objectness, person score, best other class score)."""
    pred = torch.zeros(len(rows), 85)
    for i, (cx, cy, w, h, obj, person, other) in enumerate(rows):
        pred[i, :6] = torch.tensor([cx, cy, w, h, obj, person])
        pred[i, 10] = other
    return pred


def test_person_selection_threshold_class_order_and_score() -> None:
    pred = _rows(
        (100, 100, 40, 80, 0.5, 0.2, 0.0),  # obj x cls = 0.1: kept (>=)
        (300, 100, 40, 80, 0.5, 0.19, 0.0),  # 0.095: dropped
        (500, 100, 40, 80, 0.9, 0.5, 0.6),  # best class is not person: dropped
        (100, 300, 40, 80, 0.4, 0.9, 0.0),  # 0.36: first
        (102, 302, 40, 80, 0.95, 0.3, 0.0),  # 0.285, IoU with the previous > 0.6: suppressed
    )
    boxes, scores = select_persons(pred)
    assert boxes.tolist() == [[80, 260, 120, 340], [80, 60, 120, 140]]
    assert scores.tolist() == pytest.approx([0.4, 0.5])  # the objectness, not obj x cls


def test_no_person_gives_empty_float32_results() -> None:
    boxes, scores = select_persons(torch.zeros(10, 85))
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    assert boxes.dtype == scores.dtype == torch.float32


def test_more_than_100_boxes_are_nmsed_again_at_0_55() -> None:
    # 101 columns of two boxes; in each column IoU is 0.552: kept at 0.6 (and 0.56), suppressed at 0.55
    rows = []
    for i in range(101):
        rows.append((20 + 30 * i, 100, 20, 100, 0.9, 0.9, 0.0))
        rows.append((20 + 30 * i, 100 + 28.87, 20, 100, 0.8, 0.9, 0.0))
    boxes, _ = select_persons(_rows(*rows))
    assert len(boxes) == 101


def test_variant_builders_and_the_table_rows_that_point_at_them() -> None:
    with torch.device("meta"):
        scales = [builder().scale for builder in (yolox_tiny, yolox_s, yolox_m, yolox_l, yolox_x)]
    assert [(v.depth, v.width) for v in scales] == [
        (0.33, 0.375),
        (0.33, 0.50),
        (0.67, 0.75),
        (1.0, 1.0),
        (1.33, 1.25),
    ]
    assert [BUILDERS[d.network] for d in yolox_detectors().values()] == [yolox_s, yolox_m, yolox_l, yolox_x]
    assert detector_for_file("yolox_x.pth") is DETECTORS["yolox-x"] is get_detector("yolox-x")
    assert detector_for_file("yolov3-spp.weights") is DETECTORS["yolov3-spp"]
    with pytest.raises(ValueError, match="yolox-s"):
        get_detector("yolox-xl")


def test_forward_refuses_sizes_that_are_not_multiples_of_32() -> None:
    with torch.device("meta"):
        model = yolox_s()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 100, 128, device="meta"))


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-format yolox_s.pth with plain random weights (the cheapest detector in the table)."""
    path = tmp_path_factory.mktemp("yolox") / "yolox_s.pth"
    torch.save({"start_epoch": 300, "model": yolox_s().state_dict()}, path)
    return path


def test_release_file_loads_strictly_in_eval_mode(small_file: Path) -> None:
    model = load_yolox(small_file)
    assert model.scale == YoloxScale(depth=0.33, width=0.50) and not model.training
    expected = read_yolox_checkpoint(small_file)
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def test_a_file_of_another_variant_is_refused_naming_the_one_it_fits(
    small_file: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "yolox_m.pth"
    renamed.write_bytes(small_file.read_bytes())
    with pytest.raises(WeightsError, match=r"does not fit yolox-m: .*wrong shapes.*fits yolox-s"):
        load_yolox(renamed)
    with pytest.raises(WeightsError, match=r"fits yolox-s: use that variant \(its official file is yolox_s"):
        load_yolox(small_file, "yolox-l")


def test_unreadable_or_foreign_files_are_refused(small_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_yolox(tmp_path / "yolox_s.pth")
    (tmp_path / "yolox_s.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_yolox(tmp_path / "yolox_s.pth")
    torch.save(read_yolox_checkpoint(small_file), tmp_path / "yolox_m.pth")  # a bare state_dict
    with pytest.raises(WeightsError, match="'model' entry"):
        load_yolox(tmp_path / "yolox_m.pth")
    with pytest.raises(WeightsError, match="cannot tell the YOLOX variant"):
        load_yolox(tmp_path / "detector.pth")
    with pytest.raises(WeightsError, match="cannot tell the YOLOX variant"):
        load_yolox(tmp_path / "yolov3-spp.weights")  # a detector of another family
    state = read_yolox_checkpoint(small_file)
    state["extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"1 unexpected keys: extra\.weight.*fits no YOLOX variant"):
        load_yolox(tmp_path / "extra.pth", "yolox-s")


def test_folded_channels_last_network_computes_the_same_function() -> None:
    model = yolox_tiny().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    folded = folded.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 128, 96, generator=generator) * 255
    with torch.inference_mode():
        expected = model(x)
        torch.testing.assert_close(
            folded(x.contiguous(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-3
        )
    assert expected.shape == (2, (16 * 12 + 8 * 6 + 4 * 3), 85)


def test_decoding_places_boxes_on_the_official_grid() -> None:
    """Zero box outputs decode to the cell's top-left corner and one stride wide, level by level."""
    model = yolox_tiny().eval()
    with torch.no_grad():
        for conv in model.head.reg_preds:
            conv.weight.zero_()
            conv.bias.zero_()
        out = model(torch.zeros(1, 3, 64, 96))[0]
    assert out[:, :4].tolist()[:4] == [[0, 0, 8, 8], [8, 0, 8, 8], [16, 0, 8, 8], [24, 0, 8, 8]]
    assert out[12, :4].tolist() == [0, 8, 8, 8]  # second row of the 8x12 stride-8 grid
    assert out[96, :4].tolist() == [0, 0, 16, 16] and out[-1, :4].tolist() == [64, 32, 32, 32]


@pytest.mark.parametrize(("boxes", "found"), [("one", 1), ("none", 0)])
def test_synthetic_release_files_find_one_person_or_nobody(boxes: str, found: int, tmp_path: Path) -> None:
    path = write_synthetic_yolox(tmp_path / "yolox_s.pth", "yolox-s", boxes=boxes, person_score=0.8)
    detector = PersonDetector(load_yolox(path, fold_batch_norm=True), FAMILIES["yolox"], 320)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    detected, scores = detector(image)
    assert len(detected) == found
    if found:
        assert detected.tolist() == [[0.0, 0.0, 640.0, 480.0]]
        assert scores.tolist() == pytest.approx([0.8])
