"""Golden fixtures for the YOLOX person detectors, recorded from the official code.

Runs the official YOLOX network (detector/yolox/yolox/models) and AlphaPose's official YOLOX detection path
(detector/yolox_api.py ``YOLOXDetector``: ``image_preprocess`` -> ``preproc``, the network,
``dynamic_write_results`` -> ``postprocess``, and the mapping back to image pixels of ``images_detection``)
on seeded synthetic weights and views of a real photo (the project's public-domain test photo
tests/data/astronaut.jpg: whole, cropped to other aspect ratios, enlarged by repeating pixels so that the
network input reduces it; every view is exact integer arithmetic, the same on every CPU). The weights are
official-format release files written by our own :func:`tools.synthetic_weights.write_synthetic_yolox`
(``boxes="many"``, calibrated on the official network inputs of the case's views, which the fixture
holds), so the tests rebuild exactly the same files and run our code on them. This path needs no compiled
extension, so nothing is stubbed.

Files written (all under ``out``):

* ``yolox_cases.json``: what the tests need to rebuild each case (variant, seed, views) and the
  official outputs that are small: per photo the network input's shape, the resize factor, the final
  detections (boxes xyxy in image pixels, objectness handed on as the score, class score) and the
  condition of the draw (tests/golden/conditioning.py: float32 against float64 of the official network,
  box columns and probability columns); ``paste_boxes``: where ``preproc`` puts images of the sizes
  ``GEOMETRY_SHAPES`` (height, width of the pasted part, read off its output for a black image).
* ``yolox_inputs.npz``: per view the official network input (3, 640, 640) as uint8 BGR: the tests feed
  it to our network and calibrate the weights on it, so that a resize which rounds differently on
  another CPU fails only the letterbox test.
* ``yolox_<variant>_raw.npz``: per photo the official raw predictions (N, 8400, 85) at fixed sampled
  rows (``rows``), the float64 sum of every column over all 8,400 rows, and every row that can pass the
  confidence threshold (``<view>_candidates``, indices ``<view>_candidate_rows``: objectness x best class
  score of at least half the threshold), which the post-processing test starts from.
* ``yolox_state_dict.json``: the official state_dict keys and shapes of yolox-s in order, a SHA-256 of
  the key/shape list of every variant, and the official batch-norm eps and momentum.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import torch

from alphapose.detection.yolox import INPUT_SIZE
from tests.golden.conditioning import accept, condition
from tools.synthetic_weights import write_synthetic_yolox

# The project's public-domain test photo (tests/data/README.md), 512x512.
PHOTO = Path(__file__).resolve().parent.parent / "data" / "astronaut.jpg"
# name -> (crop (x0, y0, x1, y1) or None, how many times each pixel is repeated along both axes): other
# aspect ratios from the one photo, enlarged and reduced into the 640x640 input
VIEWS: dict[str, tuple[tuple[int, int, int, int] | None, int]] = {
    "square": (None, 1),  # 512x512: enlarged by 1.25
    "wide": ((0, 96, 512, 384), 3),  # a 16:9 band, repeated to 1536x864: reduced by 2.4
    "portrait": ((128, 0, 384, 512), 1),  # 256x512: height decides, enlarged by 1.25
}
# (width, height) of the black images whose placement in the input is recorded
GEOMETRY_SHAPES = ((512, 512), (1536, 864), (256, 512), (1280, 720), (333, 517), (700, 7))
# variant -> (seed, views)
CASES = {
    "yolox-s": (11, ("square", "wide", "portrait")),
    "yolox-m": (12, ("portrait",)),
}
SAMPLED_ROWS = 200
CROWD_IMAGE = (500, 900)  # (width, height) of the image the crowd predictions are mapped back to
CROWD_SEED = 5
KEY_VARIANTS = ("yolox-tiny", "yolox-s", "yolox-m", "yolox-l", "yolox-x")


def load_view(name: str) -> np.ndarray:
    """A view of the photo as ``cv2.imread`` gives it (BGR), cropped and enlarged as it says."""
    crop, repeat = VIEWS[name]
    image = cv2.imread(str(PHOTO))
    if image is None:
        raise FileNotFoundError(PHOTO)
    if crop is not None:
        x0, y0, x1, y1 = crop
        image = image[y0:y1, x0:x1]
    image = np.repeat(np.repeat(image, repeat, axis=0), repeat, axis=1)
    return np.ascontiguousarray(image)


def calibration_inputs(official_inputs: list[np.ndarray]) -> torch.Tensor:
    """The network inputs the case's synthetic weights are calibrated on: the official inputs of its views
    (uint8 (3, 640, 640)), recorded in the fixture so that every machine rebuilds the same weights."""
    return torch.stack([torch.from_numpy(pixels) for pixels in official_inputs]).float()


def sampled_rows(count: int = SAMPLED_ROWS, total: int = 8400) -> np.ndarray:
    """Evenly spaced row indices over the three levels (80x80, 40x40, 20x20 cells at 640)."""
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))


def crowd_predictions(seed: int = CROWD_SEED, rows: int = 400) -> torch.Tensor:
    """Hand-made raw predictions (1, rows, 85) in which hundreds of person boxes survive NMS at 0.6.

    Drawn with NumPy's legacy generator, whose stream is fixed across versions: scattered boxes of
    80 to 260 pixels (some reaching over the input's edges), random objectness and class scores with
    person ahead in most rows, and a run of exact duplicates with tied scores.
    """
    rng = np.random.RandomState(seed)
    pred = np.empty((rows, 85), dtype=np.float32)
    pred[:, 0:2] = rng.uniform(-20, INPUT_SIZE + 20, (rows, 2))
    pred[:, 2:4] = rng.uniform(80, 260, (rows, 2))
    pred[:, 4] = rng.uniform(0, 1, rows)
    pred[:, 5:] = rng.uniform(0, 0.5, (rows, 80))
    pred[:, 5] += (rng.uniform(0, 1, rows) < 0.7) * 0.5
    pred[-20:] = pred[-40:-20]
    return torch.from_numpy(pred)[None]


def key_list_digest(state_dict: dict[str, torch.Tensor]) -> str:
    lines = "".join(f"{key} {list(value.shape)}\n" for key, value in state_dict.items())
    return hashlib.sha256(lines.encode()).hexdigest()


def generate(official: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    yolox_detector, get_exp, preproc, postprocess = _import_official(official)

    official_inputs = {view: preproc(load_view(view), (INPUT_SIZE, INPUT_SIZE))[0] for view in VIEWS}
    assert all((pixels == pixels.round()).all() for pixels in official_inputs.values())
    official_inputs = {view: pixels.astype(np.uint8) for view, pixels in official_inputs.items()}
    np.savez_compressed(out / "yolox_inputs.npz", **official_inputs)
    written.append(out / "yolox_inputs.npz")
    cases = {}
    for variant, (seed, views) in CASES.items():
        images = [load_view(view) for view in views]
        weights = out / f".{variant}.pth"  # scratch file, deleted below
        calibration = calibration_inputs([official_inputs[view] for view in views])
        write_synthetic_yolox(weights, variant, boxes="many", seed=seed, calibration=calibration)
        detector = yolox_detector(
            {
                "MODEL_NAME": variant,
                "MODEL_WEIGHTS": str(weights),
                "INP_DIM": INPUT_SIZE,
                "CONF_THRES": 0.1,
                "NMS_THRES": 0.6,
            },
            types.SimpleNamespace(gpus=[-1], device=torch.device("cpu")),
        )
        detector.load_model()
        weights.unlink()
        double = copy.deepcopy(detector.model).double()
        predictions: list[torch.Tensor] = []  # the network's output inside images_detection
        detector.model.register_forward_hook(_recorder(predictions))
        rows = sampled_rows()
        raw: dict[str, np.ndarray] = {"rows": rows}
        photos = {}
        for view, image in zip(views, images, strict=True):
            network_input = detector.image_preprocess(image)  # prep_frame: the BGR frame as OpenCV reads it
            assert np.array_equal(network_input[0].numpy(), official_inputs[view])
            _, ratio = preproc(image, detector.img_size)
            dims = torch.FloatTensor([(image.shape[1], image.shape[0])]).repeat(1, 2)
            dets = detector.images_detection(network_input, dims)
            prediction = predictions.pop()
            with torch.no_grad():
                prediction64 = double(network_input.double())
            dets = np.zeros((0, 8), np.float32) if isinstance(dets, int) else dets.numpy()
            raw[f"{view}_rows"] = prediction[0, rows].numpy()
            raw[f"{view}_column_sums"] = prediction[0].double().sum(dim=0).numpy()
            ranking = prediction[0, :, 4] * prediction[0, :, 5:].max(dim=1).values
            candidates = torch.nonzero(ranking >= 0.05)[:, 0]
            raw[f"{view}_candidate_rows"] = candidates.numpy()
            raw[f"{view}_candidates"] = prediction[0, candidates].numpy()
            ours32, ours64 = prediction[0].numpy(), prediction64[0].numpy()
            photos[view] = {
                "input_shape": list(network_input[0].shape),
                "ratio": ratio,
                "boxes": dets[:, 1:5].tolist(),
                "scores": dets[:, 5].tolist(),
                "class_scores": dets[:, 6].tolist(),
                "condition_xywh": accept(condition(ours32[:, :4], ours64[:, :4]), f"{variant} {view} boxes"),
                "condition_probability": accept(
                    condition(ours32[:, 4:], ours64[:, 4:]), f"{variant} {view} probabilities"
                ),
            }
        np.savez_compressed(out / f"yolox_{variant[len('yolox-') :]}_raw.npz", **raw)
        written.append(out / f"yolox_{variant[len('yolox-') :]}_raw.npz")
        cases[variant] = {"seed": seed, "views": list(views), "photos": photos}

    # the official post-processing alone, on hand-made predictions that make it retry NMS at 0.55
    crowd = crowd_predictions()
    detector.model = lambda images: crowd.clone()
    dims = torch.FloatTensor([CROWD_IMAGE]).repeat(1, 2)
    dets = detector.images_detection(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE), dims).numpy()
    first_pass = postprocess(crowd.clone(), 80, 0.1, 0.6, classes=0)
    cases["crowd"] = {
        "seed": CROWD_SEED,
        "image_size": list(CROWD_IMAGE),
        "boxes_after_first_nms": len(first_pass),
        "boxes": dets[:, 1:5].tolist(),
        "scores": dets[:, 5].tolist(),
        "class_scores": dets[:, 6].tolist(),
    }

    manifest = {
        "official_commit": "c60106d",
        "input_size": INPUT_SIZE,
        "confidence": 0.1,
        "nms_threshold": 0.6,
        "photo": "tests/data/astronaut.jpg",
        "views": {name: {"crop_xyxy": crop, "repeat": repeat} for name, (crop, repeat) in VIEWS.items()},
        "paste_boxes": {
            f"{w}x{h}": _paste_box(preproc(np.zeros((h, w, 3), np.uint8), (INPUT_SIZE, INPUT_SIZE))[0])
            for w, h in GEOMETRY_SHAPES
        },
        "weights": "write_synthetic_yolox(path, variant, 'many', seed=seed, calibration=official inputs)",
        "cases": cases,
    }
    (out / "yolox_cases.json").write_text(json.dumps(manifest, indent=1) + "\n")
    written.append(out / "yolox_cases.json")

    keys: dict[str, object] = {"digests": {}}
    for variant in KEY_VARIANTS:
        model = get_exp(exp_name=variant).get_model()
        state = model.state_dict()
        keys["digests"][variant] = key_list_digest(state)
        if variant == "yolox-s":
            keys["yolox-s"] = [[key, list(value.shape)] for key, value in state.items()]
            norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
            keys["batch_norm"] = {"eps": norm.eps, "momentum": norm.momentum}
    (out / "yolox_state_dict.json").write_text(json.dumps(keys, indent=0) + "\n")
    written.append(out / "yolox_state_dict.json")
    return written


def _paste_box(network_input: np.ndarray) -> list[int]:
    """(height, width) of the image in an official input made from a black image (pasted top-left)."""
    rows, columns = np.nonzero(network_input[0] != 114)
    assert rows.min() == 0 and columns.min() == 0
    return [int(rows.max()) + 1, int(columns.max()) + 1]


def _recorder(outputs: list[torch.Tensor]):
    def record(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        outputs.append(output.clone())

    return record


def _import_official(official: Path):
    """The official ``YOLOXDetector``, ``get_exp``, ``preproc`` and ``postprocess``.

    The official tree is appended to ``sys.path`` (its own ``alphapose`` package must not shadow ours,
    which is already imported); ``detector/`` is where yolox_api.py finds its ``yolox`` package.
    """
    for path in (str(official), str(official / "detector")):
        if path not in sys.path:
            sys.path.append(path)
    from detector.yolox.utils.preprocess import preproc
    from detector.yolox_api import YOLOXDetector
    from yolox.yolox.exp import get_exp
    from yolox.yolox.utils import postprocess

    return YOLOXDetector, get_exp, preproc, postprocess
