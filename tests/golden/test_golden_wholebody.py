"""The whole-body presets against outputs recorded from the official AlphaPose code.

tests/golden/gen_wholebody.py ran the official pose stage (crops, network, flip averaging, decoding by loss
type, whole-body pose NMS) on seeded weights and fixed boxes of a real photo; these tests rebuild the same
weights, load them strictly and run our pose stage on the same boxes; pose NMS runs on the official keypoints
and scores it was handed. The networks run unfolded (tests/alphapose/test_fast_paths.py covers the folded
form). Tolerances follow from what the fixture records (tests/golden/conditioning.py): the network outputs
from the draw's condition; a heatmap joint must decode to the official cell and quarter offset where its
decoding margins exceed the output tolerance (then its position agrees to the affine map's rounding), a
regression joint within the recorded sensitivity of its decoding. See tests/golden/README.md.
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
from alphapose.pose.presets import PRESETS as PRESETS_TABLE
from alphapose.pose.presets import get_preset
from alphapose.pose.transforms import decode_outputs
from alphapose.structures import Pose
from alphapose.weights.load import expected_shapes, load_pose_model
from tests.golden import conditioning
from tests.golden._official_wholebody import state_dict_digest
from tests.golden.gen_wholebody import (
    IMAGE,
    KEYS_FILE,
    OUTPUT_JOINTS,
    PRESETS,
    fixture_path,
    write_seeded_checkpoint,
)

DATA = GOLDEN_DATA
AFFINE_TOLERANCE = 1e-3  # pixels: a heatmap joint decided as the official one, mapped to the image
REGRESSION_FLOOR = 1e-3  # pixels: the least tolerance of a regression joint
NMS_TOLERANCE = 1e-4  # pose NMS on the official float32 values: the same arithmetic up to its order


def output_tolerance(golden: dict, tag: str) -> float:
    return conditioning.tolerance(golden[f"{tag}_condition"], np.abs(golden[f"{tag}_outputs"]).max())


class Run:
    """Our pose stage on the fixture's boxes, keeping what the official run recorded."""

    def __init__(self, pipeline: PosePipeline, image: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray):
        self.crop_boxes = pipeline.crops(image, boxes)[1]
        recorded: list[torch.Tensor] = []
        network = pipeline.heatmaps
        pipeline.heatmaps = lambda batch: recorded.append(network(batch)) or recorded[-1]  # type: ignore[method-assign]
        self.poses: list[Pose] = pipeline.estimate(image, boxes, box_scores)
        self.outputs = recorded[0]
        self.keypoints, self.scores = decode_outputs(
            self.outputs, self.crop_boxes, pipeline.preset.regression_joints
        )
        self.picks = [int(np.flatnonzero((boxes == pose.box).all(axis=1))[0]) for pose in self.poses]


@pytest.fixture(scope="module", params=PRESETS)
def model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, torch.nn.Module]:
    preset = request.param
    return preset, load_pose_model(preset, write_seeded_checkpoint(preset, tmp_path_factory.mktemp(preset)))


@pytest.fixture(scope="module", params=["plain", pytest.param("flip", marks=pytest.mark.slow)])
def case(request: pytest.FixtureRequest, model: tuple[str, torch.nn.Module]) -> tuple[Run, dict, str]:
    (preset, network), tag = model, request.param
    pipeline = PosePipeline(None, network, get_preset(preset), torch.device("cpu"), flip=tag == "flip")  # type: ignore[arg-type]
    golden = dict(np.load(fixture_path(DATA, preset)))
    golden["preset"] = preset
    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    return Run(pipeline, image, golden["boxes"], golden["box_scores"]), golden, tag


def test_crops_and_network_outputs(case: tuple[Run, dict, str]) -> None:
    run, golden, tag = case
    np.testing.assert_allclose(run.crop_boxes, golden["crop_boxes"], atol=1e-4)
    ours = run.outputs[0, list(OUTPUT_JOINTS)].numpy()
    np.testing.assert_allclose(ours, golden[f"{tag}_outputs"], rtol=0, atol=output_tolerance(golden, tag))


def test_decoded_keypoints_and_scores(case: tuple[Run, dict, str]) -> None:
    run, golden, tag = case
    tolerance = output_tolerance(golden, tag)
    decided = (golden[f"{tag}_peak_gap"] > tolerance) & (golden[f"{tag}_offset_gap"] > tolerance)
    assert decided.mean() > 0.95, "too few heatmap joints decided clearly: an ill-conditioned fixture"
    regression = get_preset(golden["preset"]).regression_joints
    heatmap = np.zeros(decided.shape, bool)
    heatmap[:, : decided.shape[1] - regression] = True
    official = golden[f"{tag}_keypoints"]
    mask = heatmap & decided
    np.testing.assert_allclose(run.keypoints[mask], official[mask], rtol=0, atol=AFFINE_TOLERANCE)
    if regression:
        moved = conditioning.FACTOR * max(
            float(golden[f"{tag}_regression_keypoint_condition"]), REGRESSION_FLOOR
        )
        np.testing.assert_allclose(run.keypoints[~heatmap], official[~heatmap], rtol=0, atol=moved)
    np.testing.assert_allclose(run.scores, golden[f"{tag}_scores"], rtol=0, atol=tolerance)


def test_pose_nms_on_the_official_keypoints(case: tuple[Run, dict, str]) -> None:
    _, golden, tag = case
    preset = get_preset(golden["preset"])
    merged = pose_nms(
        torch.from_numpy(golden["boxes"]),
        torch.from_numpy(golden[f"{tag}_keypoints"]),
        torch.from_numpy(golden[f"{tag}_scores"]),
        params=preset.nms,
    )
    assert [m.pick for m in merged] == golden[f"{tag}_picks"].tolist()
    assert len(merged) < len(golden["boxes"])  # the overlapping boxes were merged
    keypoints = np.stack([m.keypoints.numpy() for m in merged])
    scores = np.stack([m.scores.numpy() for m in merged])
    np.testing.assert_allclose(keypoints, golden[f"{tag}_merged_keypoints"], rtol=0, atol=NMS_TOLERANCE)
    np.testing.assert_allclose(scores, golden[f"{tag}_merged_scores"], rtol=0, atol=NMS_TOLERANCE)
    box_scores = golden["box_scores"][[m.pick for m in merged]]
    proposals = scores.mean(axis=1) + box_scores + 1.25 * scores.max(axis=1)  # the official proposal score
    np.testing.assert_allclose(proposals, golden[f"{tag}_proposal_scores"], rtol=0, atol=NMS_TOLERANCE)


def test_our_pose_stage_keeps_the_official_persons(case: tuple[Run, dict, str]) -> None:
    """Crops, network, decoding and pose NMS together: the same boxes survive, in the same order."""
    run, golden, tag = case
    assert run.picks == golden[f"{tag}_picks"].tolist()


def test_the_official_run_used_the_non_heatmap_nms_constants() -> None:
    for preset in PRESETS:
        assert not bool(np.load(fixture_path(DATA, preset))["use_heatmap_loss"])
        assert get_preset(preset).nms.gamma == 3.6


def test_every_whole_body_preset_loads_what_its_official_network_saves() -> None:
    """Key names and shapes of each preset's network equal the official network built from the preset's
    config (recorded by the generator): what a strict load of an official checkpoint needs."""
    recorded = json.loads((DATA / KEYS_FILE).read_text())
    presets = [p for p in PRESETS_TABLE.values() if p.official_config]
    assert len(presets) == 14 and {p.official_config for p in presets} == set(recorded)
    for preset in presets:
        assert state_dict_digest(expected_shapes(preset.name)) == recorded[preset.official_config], (
            preset.name
        )
