"""The whole-body presets against outputs recorded from the official AlphaPose code.

tests/golden/gen_wholebody.py ran the official pose stage (crops, network, flip averaging, decoding by
loss type, whole-body pose NMS) on seeded weights and fixed boxes of a real photo; these tests rebuild
the same weights, load them strictly and run our pose stage on the same boxes. The networks run
unfolded: with random weights a deep network amplifies rounding, and batch-norm folding alone moves the
DCN model's outputs by about 3e-4; tests/test_fast_paths.py covers the folded form. See
tests/golden/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from alphapose.build import expected_shapes, load_pose_model
from alphapose.pipeline import Pose, PosePipeline
from alphapose.presets import PRESETS as PRESETS_TABLE
from alphapose.presets import get_preset
from alphapose.transforms import decode_outputs
from tests.golden._official_wholebody import state_dict_digest
from tests.golden.gen_wholebody import (
    IMAGE,
    KEYS_FILE,
    OUTPUT_JOINTS,
    PRESETS,
    fixture_path,
    write_seeded_checkpoint,
)

DATA = Path(__file__).parent / "golden" / "data"
KEYPOINT_TOLERANCE = 0.01  # pixels
SCORE_TOLERANCE = 1e-4
OUTPUT_TOLERANCE = 1e-4  # relative and absolute, on the raw network outputs


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


@pytest.fixture(scope="module", params=["plain", "flip"])
def case(request: pytest.FixtureRequest, model: tuple[str, torch.nn.Module]) -> tuple[Run, dict, str]:
    (preset, network), tag = model, request.param
    pipeline = PosePipeline(None, network, get_preset(preset), torch.device("cpu"), flip=tag == "flip")  # type: ignore[arg-type]
    golden = dict(np.load(fixture_path(DATA, preset)))
    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    return Run(pipeline, image, golden["boxes"], golden["box_scores"]), golden, tag


def test_crops_and_network_outputs(case: tuple[Run, dict, str]) -> None:
    run, golden, tag = case
    np.testing.assert_allclose(run.crop_boxes, golden["crop_boxes"], atol=1e-4)
    ours = run.outputs[0, list(OUTPUT_JOINTS)].numpy()
    np.testing.assert_allclose(ours, golden[f"{tag}_outputs"], rtol=OUTPUT_TOLERANCE, atol=OUTPUT_TOLERANCE)


def test_decoded_keypoints_and_scores(case: tuple[Run, dict, str]) -> None:
    run, golden, tag = case
    np.testing.assert_allclose(run.keypoints, golden[f"{tag}_keypoints"], atol=KEYPOINT_TOLERANCE, rtol=0)
    np.testing.assert_allclose(run.scores, golden[f"{tag}_scores"], atol=SCORE_TOLERANCE, rtol=0)


def test_pose_nms_keeps_the_same_persons(case: tuple[Run, dict, str]) -> None:
    run, golden, tag = case
    assert run.picks == golden[f"{tag}_picks"].tolist()
    assert len(run.picks) < len(golden["boxes"])  # the overlapping boxes were merged
    for pose, merged, merged_scores, proposal in zip(
        run.poses,
        golden[f"{tag}_merged_keypoints"],
        golden[f"{tag}_merged_scores"],
        golden[f"{tag}_proposal_scores"],
        strict=True,
    ):
        np.testing.assert_allclose(pose.keypoints, merged, atol=KEYPOINT_TOLERANCE, rtol=0)
        np.testing.assert_allclose(pose.keypoint_scores, merged_scores, atol=SCORE_TOLERANCE, rtol=0)
        assert pose.score == pytest.approx(float(proposal), abs=SCORE_TOLERANCE)


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
