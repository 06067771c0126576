"""Golden fixtures of YOLOv3-SPP: the official Darknet port and YOLODetector on seeded weights.

Weights: :func:`tests.golden.seeded.multi_person_detector` (seed ``DETECTOR_SEED``) in the darknet
``.weights`` format, read by the official ``Darknet.load_weights``. Photo: tests/data/astronaut.jpg.

yolov3.npz holds
* ``letterbox_160``, ``letterbox_608`` (S, S, 3) uint8 RGB: the official ``prep_frame`` network inputs of
  the photo (times 255; the generator checks that this is exact), ``letterbox_band_160``: the same for the
  band ``BAND`` of the photo (512x288, so the letterbox has borders); the tests feed these to our network,
  so that a resize which rounds differently on another CPU cannot fail a network test;
* ``paste_boxes`` (len(GEOMETRY_SHAPES), 2, 4) int64: for each image size of ``GEOMETRY_SHAPES`` and each
  input size (160, 608) where the official ``letterbox_image`` pastes the resized image (top, left,
  height, width), read off its output for an all-black image;
* ``raw_160`` (1575, 85) float32: ``Darknet.forward`` on the 160 input (every row and column);
* ``candidates_608`` (M, 85) float32 and ``candidate_rows_608`` (M,): the rows of the 608 forward whose
  objectness passes 0.1, in network order (their raw values, indices into the 22,743 rows);
* ``boxes`` (P, 4) float32 and ``scores`` (P,): ``YOLODetector.images_detection`` at 608, confidence 0.1,
  NMS 0.6: the person boxes in image pixels and their objectness, in the official output order;
* ``condition_<size>_xywh``, ``condition_<size>_probability``: the official network's float32 against
  float64 difference on that input, relative to the float64 range, for the box columns and the
  probability columns (tests/golden/conditioning.py).

keys/darknet_keys.txt: the official Darknet's state_dict keys, shapes and dtypes (the layout our network's
state_dict must have), one ``key<TAB>(shape)<TAB>dtype`` line per tensor.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch
import torchvision

from tests.golden.conditioning import accept, condition
from tests.golden.official import run_official

DATA = Path(__file__).parent / "data"
PHOTO = Path(__file__).parents[1] / "data" / "astronaut.jpg"
FIXTURE = "yolov3.npz"
KEYS_FILE = "darknet_keys.txt"
RAW_SIZE = 160
DETECT_SIZE = 608
CONFIDENCE = 0.1
NMS_THRESHOLD = 0.6
BAND = (96, 384)  # rows of the photo in the band view
# (width, height) of the all-black images whose letterbox geometry is recorded: square, wide, tall, odd
GEOMETRY_SHAPES = ((512, 512), (512, 288), (288, 512), (1280, 720), (333, 517), (7, 700))


def generate(official: Path, out: Path) -> list[Path]:
    from tests.golden import seeded  # our code: only in the parent process

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seeded.write_detector_weights(work)
        shutil.copy(PHOTO, work / "photo.jpg")
        run_official(official, f"{__name__}:run_official_part", work)
        (out / "keys").mkdir(exist_ok=True)
        written = [out / FIXTURE, out / "keys" / KEYS_FILE]
        shutil.copy(work / FIXTURE, written[0])
        shutil.copy(work / KEYS_FILE, written[1])
    return written


def run_official_part(official: Path, work: Path) -> None:
    """Child process: the official Darknet and YOLODetector on the weights and photo in ``work``."""
    from detector.yolo.darknet import Darknet
    from detector.yolo.preprocess import prep_frame
    from detector.yolo_api import YOLODetector

    torch.set_grad_enabled(False)
    options = SimpleNamespace(gpus=[-1], device="cpu", tracking=False)
    image_bgr = cv2.imread(str(work / "photo.jpg"))
    weights = work / "yolov3-spp.weights"
    cfg = official / "detector/yolo/cfg/yolov3-spp.cfg"

    model = Darknet(str(cfg))
    model.load_weights(str(weights))
    model.eval()
    lines = [f"{key}\t{tuple(value.shape)}\t{value.dtype}" for key, value in model.state_dict().items()]
    (work / KEYS_FILE).write_text("\n".join(lines) + "\n")
    model.net_info["height"] = RAW_SIZE
    small, _, _ = prep_frame(image_bgr, RAW_SIZE)
    letterbox_160 = _as_pixels(small)
    band, _, _ = prep_frame(np.ascontiguousarray(image_bgr[BAND[0] : BAND[1]]), RAW_SIZE)
    raw_160 = model(small, options)[0].numpy()
    conditions = _conditions(model, small, raw_160, options, RAW_SIZE)

    model.net_info["height"] = DETECT_SIZE
    big, _, dims = prep_frame(image_bgr, DETECT_SIZE)
    raw_608 = model(big, options)[0]
    conditions |= _conditions(model, big, raw_608.numpy(), options, DETECT_SIZE)
    candidate_rows = torch.nonzero(raw_608[:, 4] > CONFIDENCE)[:, 0]
    objectness = np.sort(raw_608[candidate_rows, 4].numpy())
    assert np.diff(objectness).min() > 1e-5, "tied objectness: choose another seed"
    assert np.abs(raw_608[:, 4].numpy() - CONFIDENCE).min() > 1e-4, "objectness at the threshold"
    rows = raw_608[candidate_rows]
    corners = torch.cat([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], dim=1).double()
    corners[:, 2:] += 1  # the official +1 convention
    iou = torchvision.ops.box_iou(corners, corners).fill_diagonal_(0)
    assert (iou - NMS_THRESHOLD).abs().min() > 1e-4, "an overlap at the NMS threshold"

    detector = YOLODetector(
        {
            "CONFIG": str(cfg),
            "WEIGHTS": str(weights),
            "INP_DIM": DETECT_SIZE,
            "NMS_THRES": NMS_THRESHOLD,
            "CONFIDENCE": CONFIDENCE,
            "NUM_CLASSES": 80,
        },
        options,
    )
    dim_list = torch.FloatTensor([dims]).repeat(1, 2)
    dets = detector.images_detection(big, dim_list)
    assert not isinstance(dets, int) and len(dets) >= 5, "too few persons for a meaningful fixture"
    np.savez_compressed(
        work / FIXTURE,
        letterbox_160=letterbox_160,
        letterbox_608=_as_pixels(big),
        letterbox_band_160=_as_pixels(band),
        paste_boxes=np.array(
            [[_paste_box(shape, size) for size in (RAW_SIZE, DETECT_SIZE)] for shape in GEOMETRY_SHAPES]
        ),
        **conditions,
        raw_160=raw_160.astype(np.float32),
        candidates_608=raw_608[candidate_rows].numpy().astype(np.float32),
        candidate_rows_608=candidate_rows.numpy(),
        boxes=dets[:, 1:5].numpy().astype(np.float32),
        scores=dets[:, 5].numpy().astype(np.float32),
    )


def _as_pixels(network_input: torch.Tensor) -> np.ndarray:
    """The official float input (1, 3, S, S) as the uint8 RGB pixels it was divided from (exactly)."""
    pixels = (network_input[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert torch.equal(torch.from_numpy(pixels).permute(2, 0, 1).float().div(255.0), network_input[0])
    return pixels


def _paste_box(shape: tuple[int, int], size: int) -> list[int]:
    """(top, left, height, width) of the image inside the official letterbox of an all-black image."""
    from detector.yolo.preprocess import letterbox_image

    canvas = letterbox_image(np.zeros((shape[1], shape[0], 3), np.uint8), (size, size))
    rows, columns = np.nonzero(canvas[:, :, 0] != 128)
    return [int(rows.min()), int(columns.min()), int(np.ptp(rows)) + 1, int(np.ptp(columns)) + 1]


def _conditions(model, network_input, raw, options, size) -> dict[str, np.ndarray]:
    """Float32 against float64 of the official network on ``network_input``, per column group (a copy
    of the network as it is now: it carries the input size)."""
    double = copy.deepcopy(model).double()
    raw64 = double(network_input.double(), options)[0].numpy()
    return {
        f"condition_{size}_xywh": np.array(accept(condition(raw[:, :4], raw64[:, :4]), f"raw_{size} boxes")),
        f"condition_{size}_probability": np.array(
            accept(condition(raw[:, 4:], raw64[:, 4:]), f"raw_{size} probabilities")
        ),
    }
