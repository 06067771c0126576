"""The pose stage and pose NMS against outputs recorded from the official code (tests/golden).

pose_stage.npz: official crops, decoded keypoints and pose NMS on tests/data/astronaut.jpg with fixed
boxes, with and without flip (tests/golden/gen_pose_stage.py). pose_nms.json: made pose sets on which each
pose-NMS constant decides an outcome, with the official results; its "pinned" table names the case(s) that
change when each constant changes.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from repo_paths import GOLDEN_DATA

from alphapose.pipeline import PosePipeline
from alphapose.pose.nms import pose_nms
from alphapose.pose.presets import get_preset
from alphapose.pose.transforms import box_to_center_scale, center_scale_to_box, crop_persons, decode_heatmaps
from alphapose.weights.load import load_pose_model
from tests.golden import conditioning, seeded
from tests.golden.gen_pose_stage import FIXTURE, NMS_FIXTURE, PHOTO, PRESET

GOLDEN = GOLDEN_DATA
# R, G, B means subtracted by the official SimpleTransform.test_transform
# (alphapose/utils/presets/simple_transform.py: img[0].add_(-0.406); img[1] ...-0.457; img[2] ...-0.480).
OFFICIAL_MEANS = np.array([0.406, 0.457, 0.480], dtype=np.float32)
# Our heatmaps differ from the official ones by at most the tolerance of the run's recorded condition
# (tests/golden/conditioning.py). A joint whose heatmap maximum leads the runner-up, and whose quarter-offset
# differences stay away from zero, by more than that decodes to the same cell and offset as the official;
# its position then agrees to float rounding of the affine map (KEYPOINT_ATOL px). Scores are heatmap
# maxima: within the heatmap tolerance.
KEYPOINT_ATOL = 1e-3
# Pose NMS on identical float32 inputs: the same arithmetic up to summation order.
NMS_ATOL = 1e-4


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / FIXTURE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PosePipeline]:
    """The pose stage as the function builds it (folded, channels-last), with and without flip."""
    path = seeded.write_pose_checkpoint(PRESET, tmp_path_factory.mktemp("golden_stage"))
    model = load_pose_model(PRESET, path, fold_batch_norm=True).to(memory_format=torch.channels_last)
    preset, cpu = get_preset(PRESET), torch.device("cpu")
    # estimate() never touches the detector
    return {
        "plain": PosePipeline(None, model, preset, cpu, flip=False),  # type: ignore[arg-type]
        "flip": PosePipeline(None, model, preset, cpu, flip=True),  # type: ignore[arg-type]
    }


def test_crops_and_crop_boxes_are_the_official_ones(photo: np.ndarray, golden: dict[str, np.ndarray]) -> None:
    batch, crop_boxes = crop_persons(photo, golden["boxes"], (256, 192))
    np.testing.assert_array_equal(crop_boxes, golden["crop_boxes"])  # bit for bit: the float32 rounding
    expected = golden["crop_pixels"].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(batch.numpy(), expected - OFFICIAL_MEANS[:, None, None])


def test_crop_box_rounding_is_the_official_one_on_many_boxes(golden: dict[str, np.ndarray]) -> None:
    """300 random boxes through the official test_transform: every crop box bit for bit (the far edge is
    the top-left corner plus the size, which differs from centre plus half in the last bit for many)."""
    center, scale = box_to_center_scale(golden["geometry_boxes"], aspect_ratio=192 / 256)
    np.testing.assert_array_equal(center_scale_to_box(center, scale), golden["geometry_crop_boxes"])


def heatmap_tolerance(golden: dict[str, np.ndarray], run: str) -> float:
    """The run's heatmap tolerance: its condition times the largest official score (a heatmap maximum)."""
    return conditioning.tolerance(golden[f"{run}_condition"], np.abs(golden[f"{run}_scores"]).max())


def decided(golden: dict[str, np.ndarray], run: str) -> np.ndarray:
    """(N, K) mask of the joints whose decoding no heatmap difference within the tolerance can change."""
    margin = heatmap_tolerance(golden, run)
    return (golden[f"{run}_peak_gap"] > margin) & (golden[f"{run}_offset_gap"] > margin)


@pytest.mark.parametrize("run", ["plain", "flip"])
def test_decoded_keypoints_match_the_official_decoding(
    run: str, photo: np.ndarray, golden: dict[str, np.ndarray], pipelines: dict[str, PosePipeline]
) -> None:
    pipeline = pipelines[run]
    batch, crop_boxes = pipeline.crops(photo, golden["boxes"])
    keypoints, scores = decode_heatmaps(pipeline.heatmaps(batch).numpy(), crop_boxes)
    np.testing.assert_allclose(scores, golden[f"{run}_scores"], rtol=0, atol=heatmap_tolerance(golden, run))
    mask = decided(golden, run)
    assert mask.mean() > 0.9, "the fixture should leave few joints undecided"
    np.testing.assert_allclose(keypoints[mask], golden[f"{run}_keypoints"][mask], rtol=0, atol=KEYPOINT_ATOL)


@pytest.mark.parametrize("run", ["plain", "flip"])
def test_pose_nms_on_the_official_keypoints(run: str, golden: dict[str, np.ndarray]) -> None:
    merged = pose_nms(
        torch.from_numpy(golden["boxes"]),
        torch.from_numpy(golden[f"{run}_keypoints"]),
        torch.from_numpy(golden[f"{run}_scores"]),
    )
    assert [m.pick for m in merged] == golden[f"{run}_picks"].tolist()
    assert len(merged) < len(golden["boxes"]), "the fixture should merge duplicates"
    np.testing.assert_allclose(
        np.stack([m.keypoints.numpy() for m in merged]), golden[f"{run}_merged_keypoints"], atol=NMS_ATOL
    )
    np.testing.assert_allclose(
        np.stack([m.scores.numpy() for m in merged]), golden[f"{run}_merged_scores"], atol=NMS_ATOL
    )


@pytest.mark.parametrize("run", ["plain", "flip"])
def test_pose_stage_end_to_end_matches_the_official(
    run: str, photo: np.ndarray, golden: dict[str, np.ndarray], pipelines: dict[str, PosePipeline]
) -> None:
    poses = pipelines[run].estimate(photo, golden["boxes"], golden["box_scores"])
    picks = golden[f"{run}_picks"]
    assert len(poses) == len(picks)
    np.testing.assert_array_equal(np.stack([p.box for p in poses]), golden["boxes"][picks])
    np.testing.assert_array_equal([p.box_score for p in poses], golden["box_scores"][picks])
    score_atol = heatmap_tolerance(golden, run)
    np.testing.assert_allclose(
        np.stack([p.keypoint_scores for p in poses]), golden[f"{run}_merged_scores"], atol=score_atol
    )
    np.testing.assert_allclose(  # the mean, the box score and 1.25 x the best score
        [p.score for p in poses], golden[f"{run}_proposal_scores"], atol=3 * score_atol
    )
    everywhere = decided(golden, run).all(axis=0)  # joints decided in every box: merged ones agree too
    assert everywhere.sum() >= 12
    np.testing.assert_allclose(
        np.stack([p.keypoints for p in poses])[:, everywhere],
        golden[f"{run}_merged_keypoints"][:, everywhere],
        rtol=0,
        atol=KEYPOINT_ATOL,
    )


def nms_cases() -> dict[str, dict]:
    return json.loads((GOLDEN / NMS_FIXTURE).read_text())["cases"]


@pytest.mark.parametrize("name", list(nms_cases()))
def test_pose_nms_cases_match_the_official(name: str) -> None:
    case = nms_cases()[name]
    merged = pose_nms(
        torch.tensor(case["boxes"]), torch.tensor(case["keypoints"]), torch.tensor(case["scores"])
    )
    official = case["official"]
    assert [m.pick for m in merged] == official["picks"]
    for ours, keypoints, scores in zip(merged, official["keypoints"], official["scores"], strict=True):
        np.testing.assert_allclose(ours.keypoints.numpy(), keypoints, rtol=0, atol=NMS_ATOL)
        np.testing.assert_allclose(ours.scores.numpy(), scores, rtol=0, atol=NMS_ATOL)


def test_every_nms_constant_is_pinned_by_a_recorded_case() -> None:
    """The generator changed each official constant and recorded which cases then changed outcome."""
    pinned = json.loads((GOLDEN / NMS_FIXTURE).read_text())["pinned"]
    constants = {entry.split(" ")[0] for entry in pinned}
    assert constants == {
        "gamma", "mu", "delta1", "delta2", "matchThreds", "alpha", "scoreThreds", "PCK_match", "p_merge_fast",
    }  # fmt: skip
    assert all(pinned.values())
