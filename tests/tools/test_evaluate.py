"""COCO keypoint evaluation (alphapose.evaluation, python -m tools evaluate) on a small set
(tests/helpers/coco_set.py): the suite's photo and its mirror image with hand-made annotations, scored
through pycocotools."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from coco_set import AREA, ASTRONAUT, BOX, PHOTO, evaluate_argv, flat, write_set
from pycocotools.coco import COCO
from pycocotools.cocoeval import Params
from repo_paths import GOLDEN_DATA

from alphapose.evaluation import (
    COCO17_SIGMAS,
    HALPE26_SIGMAS,
    HALPE136_SIGMAS,
    STAT_NAMES,
    WHOLEBODY133_SIGMAS,
    WHOLEBODY_PARTS,
    AnnotationError,
    PartialResults,
    ResumeError,
    coco_eval,
    evaluate,
    keypoint_displacement,
    load_detections,
    load_ground_truth,
    oks,
)
from alphapose.pipeline import PosePipeline
from alphapose.pose.presets import PRESETS
from alphapose.pose.skeletons import COCO17, COCO_WHOLEBODY133
from alphapose.structures import Pose
from tests.golden.wholebody_eval_set import flat as flat_pose
from tests.golden.wholebody_eval_set import make_set
from tools.cli import main
from tools.errors import CommandError
from tools.evaluate import (
    Boxes,
    _check_keypoints,
    _settings,
    discard_partial,
    partial_file,
    predict,
    write_results,
)

THRESHOLDS = [0.5 + 0.05 * i for i in range(10)]  # the COCO OKS thresholds


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


class FakePipeline:
    """Answers each image's labelled persons, every keypoint moved right by ``shift`` pixels: the ground
    truth itself with shift 0. Images are told apart by their pixels."""

    skeleton = COCO17

    def __init__(self, annotations: Path, shift: float = 0.0, fail_after: int | None = None) -> None:
        data = json.loads(annotations.read_text())
        self.poses: dict[str, list[Pose]] = {}
        for image in data["images"]:
            pixels = cv2.cvtColor(
                cv2.imread(str(annotations.parent / "images" / image["file_name"])), cv2.COLOR_BGR2RGB
            )
            people = [a for a in data["annotations"] if a["image_id"] == image["id"] and "keypoints" in a]
            self.poses[digest(pixels)] = [self._pose(person, shift) for person in people]
        self.calls = 0
        self.fail_after = fail_after

    @staticmethod
    def _pose(person: dict[str, Any], shift: float) -> Pose:
        points = np.asarray(person["keypoints"], dtype=np.float32).reshape(-1, 3)
        x, y, w, h = person["bbox"]
        return Pose(
            box=np.asarray([x, y, x + w, y + h], dtype=np.float32),
            box_score=0.9,
            keypoints=points[:, :2] + np.float32([shift, 0]),
            keypoint_scores=np.where(points[:, 2] > 0, 0.9, 0.2).astype(np.float32),
            score=2.0,
        )

    def __call__(self, image: np.ndarray) -> list[Pose]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        return self.poses[digest(image)]

    def estimate(self, image: np.ndarray, boxes: Any, scores: Any, *, nms: bool = True) -> list[Pose]:
        poses = self(image)
        assert len(boxes) == len(poses) and not nms  # one pose per ground-truth box, unmerged
        return poses


def run_fake(annotations: Path, pipeline: FakePipeline, out: Path, boxes: Boxes | None = None) -> list[dict]:
    truth = load_ground_truth(annotations)
    paths = [annotations.parent / "images" / image["file_name"] for image in truth.images]
    return predict(pipeline, truth, truth.images, paths, boxes or Boxes("detector"), out, {"run": "fake"})


# --- tables ---------------------------------------------------------------------------------------------


def test_coco_sigmas_are_the_evaluators() -> None:
    np.testing.assert_allclose(COCO17_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas)


def test_halpe_and_wholebody_sigmas_are_alphaposes() -> None:
    # alphapose/utils/pPose_nms.py, oks_iou (lines 161-184 at c60106d): the 26, 136 and 133 keypoint lists.
    halpe26 = [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
               .8, .8, .8, .89, .89, .89, .89, .89, .89]  # fmt: skip
    np.testing.assert_allclose(HALPE26_SIGMAS, np.array(halpe26) / 10.0)
    np.testing.assert_allclose(HALPE136_SIGMAS, np.array(halpe26 + [0.25] * 110) / 10.0)
    hand = [0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026,
            0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031]  # fmt: skip
    wholebody = [
        .026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, 0.107, 0.107, .087,
        .087, .089, .089,
        0.068, 0.066, 0.066, 0.092, 0.094, 0.094,
        0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038,
        0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009,
        0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007,
        0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008,
        0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008,
        *hand, *hand,
    ]  # fmt: skip
    np.testing.assert_allclose(WHOLEBODY133_SIGMAS, wholebody)
    # xtcocotools' parts of a COCO-WholeBody file: its fields' lengths, in the order of the 133 keypoints.
    assert [len(WHOLEBODY_PARTS[p]) for p in ("body", "foot", "face", "lefthand", "righthand")] == [
        17, 6, 68, 21, 21
    ]  # fmt: skip
    assert COCO_WHOLEBODY133.num_keypoints == 133


# --- OKS and AP -----------------------------------------------------------------------------------------


def test_ground_truth_poses_score_ap_one(tmp_path: Path) -> None:
    annotations = write_set(tmp_path)
    results = run_fake(annotations, FakePipeline(annotations), tmp_path / "results.json")
    report = evaluate(load_ground_truth(annotations), results)
    assert list(report) == ["all"]
    stats = report["all"]
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == stats["AP75"] == pytest.approx(1.0)
    assert stats["APl"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert stats["APm"] == -1.0  # the evaluator's "no person of that size": both are large (area > 96^2)


def test_shifted_keypoints_lose_ap_as_the_hand_computed_oks_says(tmp_path: Path) -> None:
    annotations = write_set(tmp_path, mirror=False)
    shift = 28.0
    # By hand: the 11 labelled keypoints (nose, eyes, ears, shoulders, elbows, wrists) and their sigmas;
    # each is 28 px off, so exp(-28^2 / (2 * area * (2 sigma)^2)) each, averaged.
    labelled = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062]
    expected = sum(math.exp(-(shift**2) / (2 * AREA * (2 * s) ** 2)) for s in labelled) / 11
    assert expected == pytest.approx(0.6826, abs=1e-4)
    truth = load_ground_truth(annotations)
    results = run_fake(annotations, FakePipeline(annotations, shift), tmp_path / "results.json")
    (result,) = results
    predicted = np.asarray(result["keypoints"]).reshape(-1, 3)[:, :2]
    assert oks(flat(ASTRONAUT), predicted, AREA, COCO17_SIGMAS) == pytest.approx(expected, rel=1e-6)
    run = coco_eval(truth, results)
    assert run.ious[1, 1][0, 0] == pytest.approx(expected, rel=1e-6)  # the evaluator's own OKS
    # One person, one pose: matched at every threshold the OKS reaches (0.50 .. 0.65 of the ten).
    ap = sum(expected >= t for t in THRESHOLDS) / len(THRESHOLDS)
    assert ap == 0.4
    assert evaluate(truth, results)["all"]["AP"] == pytest.approx(ap)
    assert evaluate(truth, results)["all"]["AP50"] == pytest.approx(1.0)
    assert evaluate(truth, results)["all"]["AP75"] == pytest.approx(0.0)


def test_faster_coco_eval_gives_the_same_figures(tmp_path: Path) -> None:
    annotations = write_set(tmp_path)
    truth = load_ground_truth(annotations)
    results = run_fake(annotations, FakePipeline(annotations, 12.0), tmp_path / "results.json")
    results[1]["score"] = 1.0  # two different scores and OKS: the ranking counts
    results[1]["keypoints"] = [v + 14 * (i % 3 == 0) for i, v in enumerate(results[1]["keypoints"])]
    reference = evaluate(truth, results)["all"]
    assert evaluate(truth, results, evaluator="faster-coco-eval")["all"] == pytest.approx(reference)
    assert 0 < reference["AP"] < 1 and reference["AP"] != reference["AR"]


def test_wholebody_parts_are_scored_with_their_own_sigmas(tmp_path: Path) -> None:
    """A COCO-WholeBody file: 68 face and 21 left-hand points labelled around the photo's face, moved 3 px."""
    face = [(180 + 2 * i, 90 + (i % 17) * 3, 2) for i in range(68)]
    hand = [(300 + i, 400 + i, 2) for i in range(21)]
    annotation = {
        "id": 1, "image_id": 1, "category_id": 1, "bbox": BOX, "area": AREA, "iscrowd": 0,
        "keypoints": flat(ASTRONAUT), "foot_kpts": [0.0] * 18, "face_kpts": flat(face),
        "lefthand_kpts": flat(hand), "righthand_kpts": [0.0] * 63, "num_keypoints": 11,
    }  # fmt: skip
    path = tmp_path / "wholebody.json"
    categories = [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}]
    path.write_text(
        json.dumps(
            {"images": [{"id": 1, "file_name": "a.png", "width": 512, "height": 512}],
             "annotations": [annotation], "categories": categories}
        )
    )  # fmt: skip
    truth = load_ground_truth(path)
    assert truth.num_keypoints == 133 and truth.wholebody
    every = flat(ASTRONAUT) + [0.0] * 18 + flat(face) + flat(hand) + [0.0] * 63
    points = np.asarray(every).reshape(-1, 3)
    shift = 3.0
    moved = [v for x, y, _ in points for v in (x + shift, y, 0.9)]
    result = {"image_id": 1, "category_id": 1, "keypoints": moved, "score": 2.0}
    report = evaluate(truth, [result])
    assert list(report) == list(WHOLEBODY_PARTS)
    for part in ("body", "face", "lefthand", "wholebody"):
        indices = [i for i in WHOLEBODY_PARTS[part] if points[i, 2] > 0]
        by_hand = np.mean(
            [math.exp(-(shift**2) / (2 * AREA * (2 * WHOLEBODY133_SIGMAS[i]) ** 2)) for i in indices]
        )
        assert report[part]["AP"] == pytest.approx(sum(by_hand >= t for t in THRESHOLDS) / 10), part
    assert report["face"]["AP"] < report["body"]["AP"]  # the face's sigmas are the small ones
    assert report["foot"]["AP"] == report["righthand"]["AP"] == -1.0  # nobody labelled there


@pytest.mark.parametrize("evaluator", ["pycocotools", "faster-coco-eval"])
def test_wholebody_figures_are_xtcocotools(tmp_path: Path, evaluator: str) -> None:
    """The part-by-part figures of a synthetic COCO-WholeBody set as xtcocotools 1.14.3 computed them
    (tests/golden/gen_xtcocotools.py): crowds, unlabelled parts, missed persons, false poses and poses
    whose hands all score 0 included."""
    recorded = json.loads((GOLDEN_DATA / "xtcocotools_wholebody.json").read_text())
    dataset, poses = make_set()
    (tmp_path / "wholebody.json").write_text(json.dumps(dataset))
    report = evaluate(
        load_ground_truth(tmp_path / "wholebody.json"), [flat_pose(p) for p in poses], evaluator=evaluator
    )
    assert list(report) == list(recorded["stats"])
    for part, stats in recorded["stats"].items():
        assert [report[part][name] for name in STAT_NAMES] == pytest.approx(stats, abs=1e-12), part


# --- results JSON and boxes -----------------------------------------------------------------------------


def test_results_json_loads_in_the_evaluators_loader(tmp_path: Path) -> None:
    annotations = write_set(tmp_path)
    out = tmp_path / "results.json"
    results = run_fake(annotations, FakePipeline(annotations, 5.0), out)
    write_results(results, out)
    assert partial_file(out).exists()  # removed by the command once every run's results are written
    gt = COCO(str(annotations))
    dt = gt.loadRes(str(out))
    anns = dt.loadAnns(dt.getAnnIds())
    assert sorted(a["image_id"] for a in anns) == [1, 2]
    assert all(a["category_id"] == 1 and len(a["keypoints"]) == 51 for a in anns)
    first = next(a for a in anns if a["image_id"] == 1)
    assert first["keypoints"][:3] == pytest.approx([227.0, 118.0, 0.9])  # the nose, moved 5 px
    assert list(json.loads(out.read_text())[0]) == [
        "image_id",
        "category_id",
        "keypoints",
        "score",
        "box",
        "idx",
    ]


def test_ground_truth_boxes_are_the_labelled_persons_clipped_to_the_image(tmp_path: Path) -> None:
    truth = load_ground_truth(write_set(tmp_path))
    np.testing.assert_allclose(truth.person_boxes(1), [[20, 15, 480, 497]])
    results = run_fake(tmp_path / "person_keypoints.json", FakePipeline(tmp_path / "person_keypoints.json"),
                       tmp_path / "r.json", Boxes("gt"))  # fmt: skip
    assert len(results) == 2
    data = json.loads((tmp_path / "person_keypoints.json").read_text())
    data["annotations"][0]["bbox"] = [-30.0, 15.0, 700.0, 482.0]
    data["annotations"][1]["iscrowd"] = 1
    (tmp_path / "edited.json").write_text(json.dumps(data))
    edited = load_ground_truth(tmp_path / "edited.json")
    np.testing.assert_allclose(edited.person_boxes(1), [[0, 15, 511, 497]])
    assert edited.person_boxes(2).shape == (0, 4)  # a crowd is not a person to crop


def test_detections_file_in_alphaposes_format(tmp_path: Path) -> None:
    truth = load_ground_truth(write_set(tmp_path))
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 200], "score": 0.9},
        {"image_id": "/data/val2017/000000000002.png", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.7},  # the flag: left out
    ]
    path = tmp_path / "test_det_yolo.json"
    path.write_text(json.dumps(detections))
    found = load_detections(path, truth)
    np.testing.assert_allclose(found[1][0], [[10, 20, 110, 220]])
    np.testing.assert_allclose(found[1][1], [0.9])
    np.testing.assert_allclose(found[2][0], [[1, 2, 4, 6]])


def test_keypoint_displacement_pairs_the_closest_persons() -> None:
    def result(image_id: int, x: float) -> dict:
        return {"image_id": image_id, "keypoints": [x, 0.0, 1.0, x, 10.0, 1.0]}

    first = [result(1, 0.0), result(1, 100.0), result(2, 5.0)]
    second = [result(1, 103.0), result(1, 1.0)]
    by_image = {entry["image_id"]: entry for entry in keypoint_displacement(first, second)}
    assert by_image[1] == {"image_id": 1, "persons": [2, 2], "pairs": 2, "mean_px": 2.0, "max_px": 3.0}
    assert by_image[2] == {"image_id": 2, "persons": [1, 0], "pairs": 0, "mean_px": None, "max_px": None}


def test_estimate_without_pose_nms_gives_one_pose_per_box_in_order(weights_dir: Path) -> None:
    pipeline = PosePipeline.from_weights_dir(weights_dir, device="cpu", detector_size=160)
    image = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    boxes = np.array([[20, 15, 480, 497], [20, 15, 480, 497], [300, 300, 360, 420]], dtype=np.float32)
    scores = np.array([1.0, 0.8, 0.6], dtype=np.float32)
    merged = pipeline.estimate(image, boxes, scores)
    each = pipeline.estimate(image, boxes, scores, nms=False)
    assert len(merged) < len(each) == 3  # pose NMS merges the two poses of the same box
    np.testing.assert_array_equal([p.box for p in each], boxes)
    assert [p.box_score for p in each] == pytest.approx([1.0, 0.8, 0.6])
    np.testing.assert_array_equal(each[0].keypoints, each[1].keypoints)
    lone = next(p for p in merged if p.box_score == pytest.approx(0.6))
    np.testing.assert_allclose(each[2].keypoints, lone.keypoints, atol=1e-4)
    np.testing.assert_allclose(each[2].keypoint_scores, lone.keypoint_scores, atol=1e-6)


# --- resuming -------------------------------------------------------------------------------------------


def test_an_interrupted_run_goes_on_where_it_stopped(tmp_path: Path) -> None:
    annotations = write_set(tmp_path)
    out = tmp_path / "results.json"
    with pytest.raises(KeyboardInterrupt):
        run_fake(annotations, FakePipeline(annotations, 2.0, fail_after=1), out)
    assert len(partial_file(out).read_text().splitlines()) == 2  # the settings and the first image
    with partial_file(out).open("a") as file:
        file.write('{"image_id": 2, "results": [{"image_')  # a write cut short by the interruption
    again = FakePipeline(annotations, 2.0)
    resumed = run_fake(annotations, again, out)
    assert again.calls == 1  # the second image only
    assert resumed == run_fake(annotations, FakePipeline(annotations, 2.0), tmp_path / "whole.json")
    lines = partial_file(out).read_text().splitlines()
    assert [json.loads(line).get("image_id") for line in lines] == [None, 1, 2]


def test_ctrl_c_says_that_the_same_command_goes_on_from_the_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tools.evaluate

    annotations = write_set(tmp_path)
    out = tmp_path / "results.json"
    pipelines = [FakePipeline(annotations, fail_after=1), FakePipeline(annotations)]
    monkeypatch.delenv("ALPHAPOSE_PRESET", raising=False)
    monkeypatch.setattr(tools.evaluate, "_load", lambda config: pipelines.pop(0))
    argv = evaluate_argv(annotations, tmp_path / "images", out)
    try:
        status = main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C went past the command, which says nothing of the partial file")
    assert status == 130
    assert capsys.readouterr().err.endswith(
        f"interrupted: the images done are in {partial_file(out)}; run the same command to go on from them\n"
    )
    again = pipelines[-1]
    assert main(argv) == 0
    assert f"resuming {partial_file(out)}: 1 images done" in capsys.readouterr().err
    assert again.calls == 1


def compare_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipelines: list[FakePipeline]
) -> tuple[list[str], Path, Path]:
    """``evaluate --compare flip=1`` on the small set, its models ``pipelines`` in the order loaded."""
    import tools.evaluate

    monkeypatch.delenv("ALPHAPOSE_PRESET", raising=False)
    monkeypatch.setattr(tools.evaluate, "_load", lambda config: pipelines.pop(0))
    out = tmp_path / "results.json"
    argv = [
        *evaluate_argv(tmp_path / "person_keypoints.json", tmp_path / "images", out),
        "--compare",
        "flip=1",
    ]
    return argv, partial_file(out), partial_file(tmp_path / "results-compare.json")


def test_a_rerun_after_ctrl_c_in_the_compare_run_goes_on_from_both_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run's partial file went once its results were written: the rerun of an interrupted
    --compare run computed the first run again from scratch. Both stay until both runs are written."""
    annotations = write_set(tmp_path)
    pipelines = [FakePipeline(annotations), FakePipeline(annotations, 2.0, fail_after=1)]
    pipelines += [FakePipeline(annotations), FakePipeline(annotations, 2.0)]
    argv, first_partial, second_partial = compare_command(tmp_path, monkeypatch, pipelines)
    assert main(argv) == 130
    assert capsys.readouterr().err.endswith(
        f"interrupted: the images done are in {first_partial} and {second_partial}; run the same command to "
        "go on from them\n"
    )
    first, second = pipelines
    assert main(argv) == 0
    assert (first.calls, second.calls) == (0, 1)
    err = capsys.readouterr().err
    assert f"resuming {first_partial}: 2 images done" in err
    assert f"resuming {second_partial}: 1 images done" in err
    assert not first_partial.exists() and not second_partial.exists()  # both runs written: nothing to go on


def test_restart_discards_every_runs_partial_file_before_the_first_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C in the first run of a --restart command must not leave the second run's old images for the
    rerun, whose Ctrl-C line says to leave --restart out (the same command would start over again)."""
    annotations = write_set(tmp_path)
    pipelines = [FakePipeline(annotations), FakePipeline(annotations, 2.0, fail_after=1)]
    pipelines += [FakePipeline(annotations, fail_after=1), FakePipeline(annotations, 2.0)]
    pipelines += [FakePipeline(annotations), FakePipeline(annotations, 2.0)]
    argv, first_partial, second_partial = compare_command(tmp_path, monkeypatch, pipelines)
    assert main(argv) == 130
    assert main([*argv, "--restart"]) == 130
    assert capsys.readouterr().err.endswith(
        f"interrupted: the images done are in {first_partial}; run the same command without --restart to "
        "go on from them\n"
    )
    assert not second_partial.exists()
    first, second = pipelines
    assert main(argv) == 0
    assert (first.calls, second.calls) == (1, 2)


@pytest.mark.parametrize(
    ("compare", "refusal"),
    [
        ("detector=nope", "invalid --compare detector='nope': unknown detector; choose one of: yolov3-spp"),
        ("precision=fp64", "invalid --compare precision='fp64': expected one of auto, fp32"),
        ("flip=maybe", "invalid --compare flip='maybe': expected 0 or 1"),
        (
            "detector_size=33",
            "invalid --compare detector_size='33': must be a multiple of 32 from 32 to 4096",
        ),
        ("precision=int8", "invalid --compare precision='int8': int8 is calibrated on images like those"),
    ],
)
def test_a_bad_compare_setting_is_refused_naming_what_was_typed(
    compare: str,
    refusal: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The second run's settings reach Config as flags: the refusal named --detector, never typed."""
    import tools.evaluate

    annotations = write_set(tmp_path)
    monkeypatch.setattr(tools.evaluate, "_load", lambda config: pytest.fail("a model loaded"))
    assert (
        main([*evaluate_argv(annotations, tmp_path / "images", tmp_path / "r.json"), "--compare", compare])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: {refusal}") and err.count("\n") == 1, err


def test_a_compare_setting_refused_as_the_model_loads_is_named_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A weights directory without the files is found when the second model loads: named as typed too."""
    import tools.evaluate

    annotations = write_set(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    loads = iter([lambda config: FakePipeline(annotations), lambda config: config.load_pipeline()])
    monkeypatch.delenv("ALPHAPOSE_PRESET", raising=False)
    monkeypatch.setattr(tools.evaluate, "_load", lambda config: next(loads)(config))
    argv = evaluate_argv(annotations, tmp_path / "images", tmp_path / "r.json")
    assert main([*argv, "--compare", f"weights-dir={empty}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(--compare weights-dir selects the directory)" in err, err


def test_partial_results_of_other_settings_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json.partial"
    PartialResults(path, {"precision": "fp32"}).close()
    with pytest.raises(ResumeError, match=r"r\.json\.partial holds results of other settings \(different: "
                       r"precision\); pass --restart"):  # fmt: skip
        PartialResults(path, {"precision": "bf16"})
    nested = tmp_path / "task.partial"  # annotate-task keeps the model's settings under "poses"
    PartialResults(nested, {"task": 5, "poses": {"flip": True, "preset": "a"}}).close()
    with pytest.raises(ResumeError, match=r"\(different: poses\.flip, task\)"):
        PartialResults(nested, {"task": 6, "poses": {"flip": False, "preset": "a"}})
    path.write_text('{"settings": {"precision": "fp32"}}\nnot json\n{"image_id": 1, "results": []}\n')
    with pytest.raises(ResumeError, match="line 2 is damaged"):
        PartialResults(path, {"precision": "fp32"})


def test_a_partial_file_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path) -> None:
    """Bytes that are no text, or a directory in the partial file's place, were a traceback (a directory's
    with --restart too): the bytes are refused by PartialResults as any file not its own is."""
    annotations = write_set(tmp_path)
    truth = load_ground_truth(annotations)
    paths = [annotations.parent / "images" / image["file_name"] for image in truth.images]
    out = tmp_path / "results.json"
    partial_file(out).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(  # run prints it as its one line, as every refusal of PartialResults
        ResumeError, match=r"results\.json\.partial is not a partial results file; pass --restart"
    ):
        run_fake(annotations, FakePipeline(annotations, 2.0), out)
    partial_file(out).unlink()
    partial_file(out).mkdir()
    with pytest.raises(CommandError, match=r"cannot use .*results\.json\.partial: Is a directory; remove it"):
        predict(FakePipeline(annotations, 2.0), truth, truth.images, paths, Boxes("detector"), out, {})
    with pytest.raises(CommandError, match=r"cannot use .*results\.json\.partial: Is a directory; remove it"):
        discard_partial(out)  # --restart


def test_a_changed_calibration_image_refuses_the_resume(tmp_path: Path) -> None:
    """The resume key holds the calibration set's digest: new frames under the same path are other
    settings (they quantize the networks differently)."""
    import argparse

    from alphapose.cvat.settings import Config

    annotations = write_set(tmp_path)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    frame = calibration / "a.png"
    cv2.imwrite(str(frame), np.zeros((8, 8, 3), np.uint8))
    config = Config.from_env(
        {
            "ALPHAPOSE_PRECISION": "int8",
            "ALPHAPOSE_ENGINE": "openvino",
            "ALPHAPOSE_CALIBRATION_DIR": str(calibration),
        }
    )
    truth = load_ground_truth(annotations)
    args = argparse.Namespace(threshold=0.0)
    before = _settings(config, Boxes("detector"), truth, args)
    assert _settings(config, Boxes("detector"), truth, args) == before  # the same files: the same key
    path = tmp_path / "r.json.partial"
    PartialResults(path, before).close()
    cv2.imwrite(str(frame), np.full((8, 8, 3), 255, np.uint8))
    with pytest.raises(ResumeError, match=r"different: calibration\); pass --restart"):
        PartialResults(path, _settings(config, Boxes("detector"), truth, args))


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[]", "holds a list, not a COCO object"),
        ('{"images": [], "categories": []}', "has no 'annotations' list"),
        ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}',
         "no single category with keypoints"),
    ],
)  # fmt: skip
def test_malformed_annotation_files_are_refused_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message) as caught:
        load_ground_truth(path)
    assert str(path) in str(caught.value)


def test_bad_annotations_are_refused_naming_the_entry(tmp_path: Path) -> None:
    data = json.loads(write_set(tmp_path).read_text())
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:-3]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"annotations\[1\]: 'keypoints' must be a list of 51 numbers"):
        load_ground_truth(tmp_path / "short.json")
    data = json.loads((tmp_path / "person_keypoints.json").read_text())
    data["annotations"][0]["category_id"] = 7
    (tmp_path / "unknown.json").write_text(json.dumps(data))
    with pytest.raises(
        AnnotationError, match=r"annotations\[0\] has category_id 7, which the file's categories"
    ):
        load_ground_truth(tmp_path / "unknown.json")


def test_detections_of_an_unknown_category_or_image_are_refused(tmp_path: Path) -> None:
    truth = load_ground_truth(write_set(tmp_path))
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    with pytest.raises(AnnotationError, match=rf"detections file {path}: entry 0 has category_id 3"):
        load_detections(path, truth)
    path.write_text(json.dumps([{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    with pytest.raises(AnnotationError, match=r"entry 0 has image_id 5, which .* does not list"):
        load_detections(path, truth)


def test_cli_refuses_a_missing_image_naming_it_and_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = write_set(tmp_path)
    (tmp_path / "images" / "000000000002.png").unlink()
    argv = ["evaluate", "--annotations", str(annotations), "--images", str(tmp_path / "images")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"missing image {tmp_path / 'images' / '000000000002.png'} (file_name of image id 2" in err
    assert "--images must name the directory" in err
    assert main([*argv[:-1], str(tmp_path / "nowhere")]) == 2
    assert f"--images {tmp_path / 'nowhere'}: no such directory" in capsys.readouterr().err
    assert main([*argv, "--compare", "speed=fast"]) == 2
    assert "invalid --compare 'speed=fast': expected SETTING=VALUE" in capsys.readouterr().err
    (tmp_path / "images" / "000000000002.png").write_bytes(b"")
    assert main([*argv, "--detections", str(tmp_path / "none.json")]) == 2
    assert f"cannot read detections file {tmp_path / 'none.json'}" in capsys.readouterr().err


def test_cli_names_a_missing_evaluator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # as if not installed
    argv = ["evaluate", "--annotations", str(tmp_path / "a.json"), "--images", str(tmp_path)]
    assert main([*argv, "--evaluator", "faster-coco-eval"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: --evaluator faster-coco-eval: the faster-coco-eval evaluator is not installed"
    )
    assert "pip install -r requirements-eval.txt" in err


def test_a_preset_of_another_keypoint_set_is_refused(tmp_path: Path) -> None:
    data = json.loads(write_set(tmp_path).read_text())
    data["categories"][0]["keypoints"] = [f"point_{i}" for i in range(26)]
    for ann in data["annotations"]:
        if "keypoints" in ann:
            ann["keypoints"] += [0.0] * 27
    (tmp_path / "halpe.json").write_text(json.dumps(data))
    coco, halpe = PRESETS["fastpose_res50_coco"], PRESETS["fastpose_res50_halpe26"]
    refused = r"preset fastpose_res50_coco gives 17 keypoints \(coco17\), which .*halpe.json \(26 keypoints\)"
    with pytest.raises(AnnotationError, match=refused):
        _check_keypoints(coco, load_ground_truth(tmp_path / "halpe.json"))
    _check_keypoints(halpe, load_ground_truth(tmp_path / "halpe.json"))
    _check_keypoints(halpe, load_ground_truth(tmp_path / "person_keypoints.json"))  # COCO's 17 come first


@pytest.mark.parametrize(
    ("renamed", "first"),
    [
        ({1: "leye", 2: "reye"}, "keypoint 2 is 'leye' there and 'left_eye' in the preset"),
        ({1: "right_eye", 2: "left_eye"}, "(the same names in another order): keypoint 2 is 'right_eye'"),
    ],
)
def test_17_keypoints_named_otherwise_are_refused_showing_the_first_that_differs(
    renamed: dict[int, str], first: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(write_set(tmp_path).read_text())
    names = list(COCO17.keypoints)
    for index, name in renamed.items():
        names[index] = name
    data["categories"][0]["keypoints"] = names
    path = tmp_path / "renamed.json"
    path.write_text(json.dumps(data))
    assert main(evaluate_argv(path, tmp_path / "images", tmp_path / "out.json")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: {path} names its 17 keypoints differently from preset fastpose_res50_coco")
    assert first in err
    assert "rename them in the file's category" in err and "--preset" in err
    assert "cannot score" not in err  # not a question of the keypoint count


def test_cli_refuses_an_image_of_another_size_than_annotated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = write_set(tmp_path, mirror=False)
    cv2.imwrite(str(tmp_path / "images" / "000000000001.png"), np.zeros((40, 30, 3), np.uint8))
    with pytest.raises(AnnotationError, match=r"000000000001.png is 30x40 but .* says 512x512"):
        run_fake(annotations, FakePipeline(write_set(tmp_path / "other", mirror=False)), tmp_path / "r.json")


# --- end to end -----------------------------------------------------------------------------------------


MODEL = ["--detector-size", "160", "--device", "cpu"]


def test_cli_end_to_end_on_synthetic_weights(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = write_set(tmp_path)
    out = tmp_path / "out" / "results.json"
    argv = evaluate_argv(annotations, tmp_path / "images", out)
    assert main([*argv, "--weights-dir", str(weights_dir), *MODEL]) == 0
    printed = capsys.readouterr()
    header, row = printed.out.splitlines()[:2]
    assert header.split() == ["run", "part", "AP", "AP50", "AP75", "APm", "APl", "AR"]
    assert row.startswith("this run") and len(row.split()) == 9
    assert "(2 poses on 2 images)" in printed.err  # the synthetic detector finds one person per image
    assert f"warning: {weights_dir / 'yolov3-spp.weights'}, " in printed.err
    assert "synthetic random weights (written by tools.synthetic_weights)" in printed.err
    assert not partial_file(out).exists()
    dt = COCO(str(annotations)).loadRes(str(out))
    assert sorted(dt.imgs) == [1, 2] and len(dt.anns) == 2


@pytest.mark.slow
def test_cli_gt_boxes_and_compare_on_synthetic_weights(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = write_set(tmp_path)
    out = tmp_path / "results.json"
    argv = evaluate_argv(annotations, tmp_path / "images", out)
    extra = ["--weights-dir", str(weights_dir), "--gt-boxes", "--preset", "fastpose_res50_halpe26", *MODEL]
    assert main([*argv, *extra, "--compare", "flip=1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed[1:4]] == ["this", "--compare", "difference"]
    assert (
        printed[4].startswith("keypoint displacement over 2 images, px:")
        and "0 persons unpaired" in printed[4]
    )
    first, second = json.loads(out.read_text()), json.loads((tmp_path / "results-compare.json").read_text())
    assert len(first) == len(second) == 2 and len(first[0]["keypoints"]) == 78  # Halpe's 26, scored on 17
    assert first[0]["keypoints"] != second[0]["keypoints"]


@pytest.mark.slow
def test_cli_with_a_detections_file_on_synthetic_weights(weights_dir: Path, tmp_path: Path) -> None:
    annotations = write_set(tmp_path)
    detections = tmp_path / "test_det_yolo.json"
    detections.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": BOX, "score": 0.8}]))
    out = tmp_path / "results.json"
    argv = evaluate_argv(annotations, tmp_path / "images", out)
    assert main([*argv, "--detections", str(detections), "--weights-dir", str(weights_dir), *MODEL]) == 0
    (result,) = json.loads(out.read_text())  # the file's one box; nobody on the image without boxes
    assert result["image_id"] == 1 and result["box"] == pytest.approx(BOX)


def test_cli_refuses_an_out_it_cannot_write_and_a_bad_threshold_before_any_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found at once, in one line naming the flag: a run takes hours before it writes --out."""
    annotations = write_set(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    for out in (tmp_path / "images", blocker / "results.json"):
        assert main(evaluate_argv(annotations, tmp_path / "images", out)) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: cannot write --out {out}: "), err
    argv = evaluate_argv(annotations, tmp_path / "images", tmp_path / "r.json")
    assert main([*argv, "--threshold", "nan"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: invalid --threshold nan: must be a person (box) score in [0, 1]"
    )
