"""Golden fixtures of the pose stage: official crops, decoding and pose NMS, on the photo and on made cases.

Photo (pose_stage.npz): tests/data/astronaut.jpg with the fixed ``BOXES`` (fractional corners, overlapping
boxes, near-copies that pose NMS merges, one box reaching past the image), COCO FastPose with the seeded
checkpoint (``POSE_SEED``), run the way scripts/demo_inference.py and DetectionLoader / DataWriter run
them: ``SimpleTransform.test_transform`` on the RGB image per box, the network,
``heatmap_to_coord_simple`` on each crop box, ``pose_nms``. The flip run averages in
``flip_heatmap(model(flip(crops)), shift=True)`` with the shift taken from a copy: the official line
shifts in place between overlapping views, which current PyTorch computes inconsistently
(tests/golden/README.md). Arrays (N boxes, K = 17): ``boxes`` (N, 4), ``box_scores`` (N,),
``geometry_boxes`` (300, 4) seeded random boxes and their ``geometry_crop_boxes`` from ``test_transform``
(crop-box rounding on many boxes), ``crop_pixels`` (N, 256, 192, 3) uint8 (the official normalised crops
are exactly ``pixels / 255 - mean``: checked here), ``crop_boxes`` (N, 4); per run ``<run>`` in
``plain``/``flip``: ``<run>_keypoints`` (N, K, 2) and ``<run>_scores`` (N, K) before NMS,
``<run>_condition``: float32 against float64 heatmaps of the official network (tests/golden/conditioning.py),
``<run>_peak_gap`` and ``<run>_offset_gap`` (N, K): how far the heatmap maximum is from the runner-up and
the quarter-offset differences from zero (a joint whose gaps are within float noise of zero may
legitimately decode differently), and the NMS output ``<run>_picks``, ``<run>_merged_keypoints``,
``<run>_merged_scores``, ``<run>_proposal_scores``.

Made cases (pose_nms.json): small sets of poses for which each pose-NMS constant decides an outcome (see
``nms_cases``), with the official ``pose_nms`` output for each. The generator re-runs every case with each
official constant changed (``SENSITIVITY``) and stops unless some case's outcome changes, so every constant
is pinned by a recorded case; the json lists which.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from tests.golden.official import run_official

DATA = Path(__file__).parent / "data"
PHOTO = Path(__file__).parents[1] / "data" / "astronaut.jpg"
FIXTURE = "pose_stage.npz"
NMS_FIXTURE = "pose_nms.json"
PRESET = "fastpose_res50_coco"
CONFIG = "configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml"
COCO_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]
BOXES = np.array(
    [
        [20.37, 10.61, 370.12, 511.0],  # the person
        [140.5, 12.25, 310.75, 200.5],  # her head
        [100.9, 130.3, 320.2, 420.7],  # her upper body
        [275.1, 338.3, 505.6, 512.0],  # the helmet
        [355.44, 2.9, 468.3, 282.6],  # the model shuttle
        [0.2, 0.1, 95.7, 400.3],  # the flag
        [30.3, 20.7, 360.9, 500.2],  # overlapping the person
        [135.5, 20.25, 317.75, 210.5],  # overlapping the head
        [400.3, 300.2, 560.7, 620.9],  # reaching past the right and bottom edges
        [20.42, 10.66, 370.17, 510.95],  # near-copies (0.05 px) of the person and the head: their
        [140.55, 12.3, 310.8, 200.45],  # poses match the originals' and pose NMS merges them
    ],
    dtype=np.float32,
)
BOX_SCORES = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4], dtype=np.float32)
MEANS = (0.406, 0.457, 0.480)
GEOMETRY_SEED, GEOMETRY_BOXES = 5, 300
# Official pPose_nms constants and changed values that must change some recorded outcome.
SENSITIVITY = {
    "gamma": (21.8, 23.2, 35.0),
    "mu": (1.6, 1.8, 0.5),
    "delta1": (0.9, 1.1),
    "delta2": (2.4, 3.0),
    "matchThreds": (4, 6, 9),
    "alpha": (0.09, 0.11),
    "scoreThreds": (0.28, 0.32),
}
# The two distance caps are literals in the official functions (PCK_match: min(ref_dist, 7); p_merge_fast:
# min(ref_dist, 15)); the generator checks them by re-running with the official functions' sources edited.
CAPS = {"7": ("PCK_match", (6, 8)), "15": ("p_merge_fast", (3, 14, 16))}


def generate(official: Path, out: Path) -> list[Path]:
    from tests.golden import seeded  # our code: only in the parent process

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seeded.write_pose_checkpoint(PRESET, work).rename(work / "pose.pth")
        shutil.copy(PHOTO, work / "photo.jpg")
        run_official(official, f"{__name__}:run_official_part", work)
        for name in (FIXTURE, NMS_FIXTURE):
            shutil.copy(work / name, out / name)
    return [out / FIXTURE, out / NMS_FIXTURE]


def _base_pose() -> np.ndarray:
    """A standing person's 17 COCO keypoints, about 100 x 200 px, every pair of keypoints > 10 px apart."""
    return np.array(
        [
            [100, 40], [112, 28], [88, 28], [125, 36], [75, 36], [140, 80], [60, 80], [155, 125],
            [45, 125], [165, 170], [35, 170], [128, 175], [72, 175], [132, 230], [68, 230], [136, 285],
            [64, 285],
        ],
        dtype=np.float32,
    )  # fmt: skip


def _pose(shift: dict[int, tuple[float, float]], rest: tuple[float, float] = (60.0, 0.0)) -> np.ndarray:
    """The base pose with the listed keypoints moved by their shift and every other one by ``rest``."""
    pose = _base_pose()
    for k in range(17):
        pose[k] += np.array(shift.get(k, rest), dtype=np.float32)
    return pose


def nms_cases() -> dict[str, dict[str, list]]:
    """Pose sets whose NMS outcome one constant decides. Pose 0 is always the pick (higher mean score).

    Box sizes set the reference distance ``alpha * max(w, h)``; a tiny box (5 px) makes it 0.5 px, so that
    keypoints between 0.5 and 1 px away add to the similarity but do not count as matching keypoints.
    """
    base = _base_pose()

    def case(poses: list[np.ndarray], scores: list[np.ndarray], box_size: float) -> dict[str, list]:
        boxes = [[10.0, 10.0, 10.0 + box_size, 10.0 + box_size] for _ in poses]
        return {
            "boxes": boxes,
            "box_scores": [0.9 - 0.1 * i for i in range(len(poses))],
            "keypoints": [p.tolist() for p in poses],
            "scores": [s.tolist() for s in scores],
        }

    high, lower = np.full(17, 0.9, np.float32), np.full(17, 0.8, np.float32)
    # Similarity 14 * (tanh(0.9) tanh(0.8) + 1.7 exp(-1 / 2.65)) = 22.98 just above gamma (22.48), and
    # 13 * (... + 1.7 exp(-0.886 / 2.65)) = 22.0 just below, with no matching keypoint (0.886 and 1 px
    # are beyond ref_dist 0.5 but within the 1 px of the score term): gamma, mu, delta1, delta2 decide.
    cases = {
        "similarity_above_gamma": case(
            [base, _pose(dict.fromkeys(range(14), (0.0, 1.0)))], [high, lower], 5.0
        ),
        "similarity_below_gamma": case(
            [base, _pose(dict.fromkeys(range(13), (0.0, 0.886)))], [high, lower], 5.0
        ),
        # exactly 5 / 4 keypoints within min(ref_dist, 7) = 7 px (box 100: ref_dist 10): matchThreds, cap 7
        "five_matching_keypoints": case(
            [base, _pose(dict.fromkeys(range(5), (6.5, 0.0)))], [high, lower], 100.0
        ),
        "four_matching_keypoints": case(
            [base, _pose(dict.fromkeys(range(4), (6.5, 0.0)))], [high, lower], 100.0
        ),
        "beyond_match_cap": case([base, _pose(dict.fromkeys(range(5), (7.5, 0.0)))], [high, lower], 100.0),
        # ref_dist 5 (box 50): 5 keypoints at 4.8 px match, at 5.2 px they do not: alpha
        "alpha_inside": case([base, _pose(dict.fromkeys(range(5), (4.8, 0.0)))], [high, lower], 50.0),
        "alpha_outside": case([base, _pose(dict.fromkeys(range(5), (5.2, 0.0)))], [high, lower], 50.0),
        # a merged cluster (6 keypoints 2 px away) whose other keypoints lie 14.5 px (inside min(ref, 15),
        # ref 30) or 15.5 px (outside) from the pick: the merge cap decides which enter the average
        "merge_radius": case(
            [
                base,
                _pose(
                    {**dict.fromkeys(range(6), (2.0, 0.0)), **dict.fromkeys(range(6, 11), (14.5, 0.0))},
                    rest=(15.5, 0.0),
                ),
            ],
            [high, lower],
            300.0,
        ),
    }
    # best keypoint 0.31 (kept) / 0.29 (dropped): scoreThreds on the pick; a 0.31 pick merged with a 0.1
    # duplicate falls to 0.26 < 0.3 after the weighted average: the second check
    weak = np.full(17, 0.05, np.float32)
    weak_kept, weak_dropped = weak.copy(), weak.copy()
    weak_kept[3], weak_dropped[3] = 0.31, 0.29
    cases["score_kept"] = case([base], [weak_kept], 100.0)
    cases["score_dropped"] = case([base], [weak_dropped], 100.0)
    duplicate = np.full(17, 0.04, np.float32)
    duplicate[3] = 0.1
    cases["score_dropped_after_merge"] = case([base, base + 1.0], [weak_kept, duplicate], 100.0)
    # zero scores (replaced by 1e-5) and a three-way cluster with an unrelated fourth person
    zeros = high.copy()
    zeros[[0, 5, 9]] = 0.0
    cases["zeros_and_clusters"] = case(
        [base, base + 0.5, base + np.float32(300.0), base + 1.5], [high, zeros, lower, lower * 0.9], 100.0
    )
    return cases


def run_official_part(official: Path, work: Path) -> None:
    torch.set_grad_enabled(False)
    record_photo(official, work)
    record_nms_cases(work)


def record_photo(official: Path, work: Path) -> None:
    import copy
    from types import SimpleNamespace

    import cv2

    from alphapose.utils.pPose_nms import pose_nms
    from alphapose.utils.presets import SimpleTransform
    from alphapose.utils.transforms import flip, flip_heatmap, heatmap_to_coord_simple
    from tests.golden.conditioning import accept, condition
    from tests.golden.gen_pose_nets import official_pose_model

    model = official_pose_model(official, PRESET, work / "pose.pth")
    image = cv2.cvtColor(cv2.imread(str(work / "photo.jpg")), cv2.COLOR_BGR2RGB)
    transform = SimpleTransform(
        SimpleNamespace(joint_pairs=COCO_PAIRS), scale_factor=0, add_dpg=False, input_size=[256, 192],
        output_size=[64, 48], rot=0, sigma=2, train=False, gpu_device="cpu",
    )  # fmt: skip
    boxes = torch.from_numpy(BOXES)
    crops, crop_boxes = torch.zeros(len(boxes), 3, 256, 192), torch.zeros(len(boxes), 4)
    for i, box in enumerate(boxes):  # DetectionLoader.image_postprocess
        crops[i], crop_box = transform.test_transform(image, box)
        crop_boxes[i] = torch.FloatTensor(crop_box)
    # Crop-box geometry alone on many boxes: float32 rounding cases the photo's boxes may not hit.
    geometry = np.random.default_rng(GEOMETRY_SEED).uniform(0, 1000, (GEOMETRY_BOXES, 2)).astype(np.float32)
    sizes = np.random.default_rng(GEOMETRY_SEED + 1).uniform(1, 600, (GEOMETRY_BOXES, 2)).astype(np.float32)
    geometry = np.concatenate([geometry, geometry + sizes], axis=1)
    tiny = np.zeros((4, 4, 3), dtype=np.uint8)
    geometry_crop_boxes = [transform.test_transform(tiny, box)[1] for box in torch.from_numpy(geometry)]
    means = torch.tensor(MEANS)[:, None, None]
    pixels = ((crops + means) * 255).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(pixels.float() / 255 - means, crops), "crops are not pixels / 255 - mean"
    arrays = {
        "boxes": BOXES,
        "box_scores": BOX_SCORES,
        "crop_pixels": pixels.permute(0, 2, 3, 1).numpy(),
        "crop_boxes": crop_boxes.numpy(),
        "geometry_boxes": geometry,
        "geometry_crop_boxes": torch.FloatTensor(geometry_crop_boxes).numpy(),
    }
    runs = {}
    for precision, network, inputs in (
        ("", model, crops),
        ("64", copy.deepcopy(model).double(), crops.double()),
    ):
        heatmaps = network(inputs)
        flipped = flip_heatmap(network(flip(inputs)), COCO_PAIRS, shift=False)
        shifted = flipped.clone()
        shifted[..., 1:] = flipped[..., :-1].clone()  # the official shift=True, from a copy
        runs[f"plain{precision}"], runs[f"flip{precision}"] = heatmaps, (heatmaps + shifted) / 2
    for run in ("plain", "flip"):
        hm = runs[run]
        arrays[f"{run}_condition"] = np.array(accept(condition(hm.numpy(), runs[f"{run}64"].numpy()), run))
        keypoints, scores = [], []
        for i in range(len(boxes)):  # DataWriter.update
            coords, maxvals = heatmap_to_coord_simple(hm[i], crop_boxes[i].tolist())
            keypoints.append(torch.from_numpy(coords).unsqueeze(0))
            scores.append(torch.from_numpy(maxvals).unsqueeze(0))
        preds, pose_scores = torch.cat(keypoints), torch.cat(scores)
        arrays[f"{run}_keypoints"] = preds.numpy().astype(np.float32)
        arrays[f"{run}_scores"] = pose_scores[..., 0].numpy().astype(np.float32)
        arrays[f"{run}_peak_gap"], arrays[f"{run}_offset_gap"] = decoding_margins(hm.numpy())
        result = pose_nms(
            boxes.clone(), torch.from_numpy(BOX_SCORES)[:, None], torch.zeros(len(boxes), 1),
            preds.clone(), pose_scores.clone(), 0,
        )  # fmt: skip
        _, res_scores, _, res_preds, res_pose_scores, picks = result
        arrays[f"{run}_picks"] = np.array(picks, dtype=np.int64)
        arrays[f"{run}_merged_keypoints"] = np.stack([p.numpy() for p in res_preds]).astype(np.float32)
        arrays[f"{run}_merged_scores"] = np.stack([s[:, 0].numpy() for s in res_pose_scores]).astype(
            np.float32
        )
        arrays[f"{run}_proposal_scores"] = np.array(  # DataWriter.update's proposal_score
            [
                float(torch.mean(s) + b + 1.25 * max(s))
                for s, b in zip(res_pose_scores, res_scores, strict=True)
            ],
            dtype=np.float32,
        )
    np.savez_compressed(work / FIXTURE, **arrays)


def decoding_margins(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per joint: maximum minus runner-up, and the smaller |difference| the quarter offset takes the sign of
    (infinite where no offset applies)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    top = np.sort(flat, axis=2)
    peak_gap = top[..., -1] - top[..., -2]
    offset_gap = np.full((n, k), np.inf, dtype=np.float32)
    index = flat.argmax(axis=2)
    for i in range(n):
        for j in range(k):
            y, x = divmod(int(index[i, j]), w)
            if 1 < x < w - 1 and 1 < y < h - 1:
                hm = heatmaps[i, j]
                offset_gap[i, j] = min(abs(hm[y, x + 1] - hm[y, x - 1]), abs(hm[y + 1, x] - hm[y - 1, x]))
    return peak_gap.astype(np.float32), offset_gap


def _official_nms(case: dict[str, list]) -> dict[str, list]:
    from alphapose.utils.pPose_nms import pose_nms

    scores = torch.tensor(case["scores"])[..., None]
    result = pose_nms(
        torch.tensor(case["boxes"]), torch.tensor(case["box_scores"])[:, None],
        torch.zeros(len(scores), 1), torch.tensor(case["keypoints"]), scores, 0,
    )  # fmt: skip
    _, _, _, preds, pose_scores, picks = result
    return {
        "picks": [int(p) for p in picks],
        "keypoints": [p.tolist() for p in preds],
        "scores": [s[:, 0].tolist() for s in pose_scores],
    }


def record_nms_cases(work: Path) -> None:
    import inspect

    from alphapose.utils import pPose_nms

    cases = nms_cases()
    results = {name: _official_nms(case) for name, case in cases.items()}
    pinned: dict[str, list[str]] = {}

    def changed() -> list[str]:
        return [name for name, case in cases.items() if _official_nms(case) != results[name]]

    for constant, values in SENSITIVITY.items():
        original = getattr(pPose_nms, constant)
        for value in values:
            setattr(pPose_nms, constant, value)
            names = changed()
            assert names, f"no case depends on {constant} = {original} (tried {value})"
            pinned[f"{constant} {original} -> {value}"] = names
        setattr(pPose_nms, constant, original)
    for literal, (function_name, values) in CAPS.items():
        original = getattr(pPose_nms, function_name)
        source = inspect.getsource(original)
        assert source.count(f"min(ref_dist, {literal})") == 1, source
        for value in values:
            namespace = dict(vars(pPose_nms))
            edited = source.replace(f"min(ref_dist, {literal})", f"min(ref_dist, {value})")
            exec(edited, namespace)
            setattr(pPose_nms, function_name, namespace[function_name])
            names = changed()
            assert names, f"no case depends on the cap {literal} in {function_name} (tried {value})"
            pinned[f"{function_name} cap {literal} -> {value}"] = names
        setattr(pPose_nms, function_name, original)
    payload = {
        "cases": {name: {**cases[name], "official": results[name]} for name in cases},
        "pinned": pinned,
    }
    (work / NMS_FIXTURE).write_text(json.dumps(payload, indent=1) + "\n")
