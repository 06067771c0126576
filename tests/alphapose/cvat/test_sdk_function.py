"""cvat_function.py as cvat-cli runs it: loaded by cvat-cli's own loader, checked by the SDK's own validation.

The function is loaded with cvat-cli's ``FunctionLoader`` from ``-p NAME=TYPE:VALUE`` strings parsed by
cvat-cli's own parser, its spec is built by the SDK's validating constructor, and its shapes go through
``_AnnotationMapper``, the per-frame check and label remapping that ``annotate_task`` (``cvat-cli task
auto-annotate``) and agents (``cvat-cli function run-agent``) apply, against task labels made from what
``cvat-cli function create-native`` registers. The weights are synthetic: the detector finds one person
covering the whole image with objectness 0.9; the photo is a real one with people (tests/data/README.md).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import pytest
from cvat_cli.__main__ import main as cvat_cli_main
from cvat_cli._internal.agent_driver_detection import AgentDetectionFunctionDriver
from cvat_cli._internal.common import FunctionLoader
from cvat_cli._internal.parsers import parse_function_parameter
from cvat_sdk import models
from cvat_sdk.auto_annotation.driver import _AnnotationMapper, _DetectionFunctionContextImpl
from cvat_server_stub import ImageTask, cvat_labels, serve
from nuclio_harness import NuclioFunction, server_env
from PIL import Image
from repo_paths import REPO, TEST_DATA

from alphapose.cvat.errors import ConfigError
from alphapose.cvat.request import decode_image
from alphapose.cvat.sdk_function import PARAMETERS, AlphaPoseFunction, config_from_parameters, detection_spec
from alphapose.cvat.settings import Config
from alphapose.cvat.spec import label_spec
from alphapose.errors import WeightsError
from alphapose.pose.presets import get_preset
from alphapose.structures import Pose

ROOT = REPO
FUNCTION_FILE = ROOT / "cvat_function.py"
MODULE = "alphapose.cvat.sdk_function"
PHOTO = TEST_DATA / "astronaut.jpg"
BOX_SCORE = 0.9  # the synthetic detector's objectness (a float32, so slightly below 0.9 as a double)
FRAME = 7  # any task frame: the mapper moves the shapes from frame 0 to it


@pytest.fixture(autouse=True)
def small_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function reads ``ALPHAPOSE_*`` like the Nuclio function: a small detector input keeps the tests
    fast (the answer's structure does not depend on it), and no other variable leaks in."""
    for name in list(os.environ):
        if name.startswith("ALPHAPOSE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ALPHAPOSE_DETECTOR_SIZE", "160")
    monkeypatch.setenv("ALPHAPOSE_DEVICE", "cpu")


def cli_parameters(*arguments: str) -> dict[str, object]:
    """``-p`` arguments as cvat-cli parses them into the parameters of ``create``."""
    return dict(parse_function_parameter(argument) for argument in arguments)


def load(weights_dir: Path, *arguments: str, module: str | None = None) -> AlphaPoseFunction:
    parameters = cli_parameters(f"weights_dir=str:{weights_dir}", *arguments)
    loader = FunctionLoader(module, None if module else FUNCTION_FILE, parameters)
    function = loader.load()
    assert isinstance(function, AlphaPoseFunction)
    return function


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """The frame as the SDK hands it over: a decoded PIL image."""
    with Image.open(PHOTO) as image:
        image.load()
        return image


@pytest.fixture(scope="module")
def coco(weights_dir: Path) -> Iterator[AlphaPoseFunction]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALPHAPOSE_DETECTOR_SIZE", "160")
        patch.setenv("ALPHAPOSE_DEVICE", "cpu")
        yield load(weights_dir, "preset=str:fastpose_res50_coco")


@pytest.fixture(scope="module")
def halpe(weights_dir: Path) -> Iterator[AlphaPoseFunction]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALPHAPOSE_DETECTOR_SIZE", "160")
        patch.setenv("ALPHAPOSE_DEVICE", "cpu")
        yield load(weights_dir, "preset=str:fastpose_res50_halpe26", module=MODULE)


def context(conf_threshold: float | None = None) -> cvataa.DetectionFunctionContext:
    """The context object annotate_task and agents pass to ``detect``."""
    return _DetectionFunctionContextImpl(frame_name="astronaut.jpg", conf_threshold=conf_threshold)


def registered_labels(spec: cvataa.DetectionFunctionSpec) -> list[dict]:
    """``labels_v2``: the labels ``cvat-cli function create-native`` sends to the server for a spec."""
    fields = AgentDetectionFunctionDriver.get_remote_function_fields(spec)
    return json.loads(json.dumps(fields))["labels_v2"]


def task_labels(function: AlphaPoseFunction) -> list[models.Label]:
    """The labels of a task made from the registered function, with server-side ids, as the SDK reads them."""
    return [
        models.Label._new_from_openapi_data(**label)
        for label in cvat_labels(registered_labels(function.spec), 5)
    ]


def validated(function: AlphaPoseFunction, shapes: list) -> list[models.LabeledShapeRequest]:
    """The shapes after the SDK's per-frame validation; raises BadFunctionError on any violation."""
    mapper = _AnnotationMapper(
        logging.getLogger("test"),
        function.spec.labels,
        task_labels(function),
        allow_unmatched_labels=False,
        conv_mask_to_poly=False,
    )
    tags, remapped = mapper.validate_and_remap(shapes, FRAME)
    assert tags == []
    return remapped


@pytest.mark.parametrize("fixture", ["coco", "halpe"])
def test_spec_is_one_person_skeleton_with_the_preset_keypoints(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    function: AlphaPoseFunction = request.getfixturevalue(fixture)
    keypoints = get_preset(function.predictor.settings.options.preset).skeleton.keypoints
    (label,) = cvataa.DetectionFunctionSpec(labels=function.spec.labels).labels  # the SDK's own validation
    assert (label.name, label.type) == ("person", "skeleton")
    assert [sublabel.name for sublabel in label.sublabels] == list(keypoints)
    assert {sublabel.type for sublabel in label.sublabels} == {"points"}
    # the same sublabel ids as the label spec function.yaml advertises
    nuclio_ids = [
        s["id"]
        for s in label_spec(get_preset(function.predictor.settings.options.preset).skeleton)[0]["sublabels"]
    ]
    assert [sublabel.id for sublabel in label.sublabels] == nuclio_ids
    (registered,) = registered_labels(function.spec)
    assert (registered["name"], registered["type"]) == ("person", "skeleton")
    assert [s["name"] for s in registered["sublabels"]] == list(keypoints)


@pytest.mark.parametrize(("fixture", "keypoints"), [("coco", 17), ("halpe", 26)])
def test_detect_on_a_photo_passes_the_sdk_validation(
    fixture: str, keypoints: int, request: pytest.FixtureRequest, photo: Image.Image
) -> None:
    function: AlphaPoseFunction = request.getfixturevalue(fixture)
    shapes = function.detect(context(), photo)
    assert len(shapes) == 1
    (person,) = validated(function, shapes)
    labels = task_labels(function)
    assert person.label_id == labels[0].id and person.frame == FRAME and person.source == "auto"
    assert len(person.elements) == keypoints
    assert [e.label_id for e in person.elements] == [s.id for s in labels[0].sublabels]
    for element in person.elements:
        assert all(np.isfinite(element.points)) and len(element.points) == 2
        assert 0 <= element.score <= 1
    assert person.score == pytest.approx(BOX_SCORE)


def test_the_answer_is_the_nuclio_functions_answer(
    coco: AlphaPoseFunction, weights_dir: Path, photo: Image.Image
) -> None:
    """Same configuration, same photo: the same persons, points, outside flags and confidences."""
    nuclio = NuclioFunction(server_env(weights_dir))
    answer = nuclio.post_json({"image": base64.b64encode(PHOTO.read_bytes()).decode("ascii")})
    assert answer.status == 200
    expected = json.loads(answer.body)
    shapes = coco.detect(context(), photo)
    assert len(shapes) == len(expected) == 1
    names = {sublabel.id: sublabel.name for sublabel in coco.spec.labels[0].sublabels}
    for shape, person in zip(shapes, expected, strict=True):
        assert shape.score == pytest.approx(person["confidence"])
        for element, point in zip(shape.elements, person["elements"], strict=True):
            assert names[element.label_id] == point["label"]
            assert element.points == pytest.approx(point["points"])
            assert element.outside == point["outside"]
            assert element.score == pytest.approx(min(max(point["confidence"], 0.0), 1.0))


def test_conf_threshold_selects_persons_by_detector_score(
    coco: AlphaPoseFunction, photo: Image.Image
) -> None:
    assert len(coco.detect(context(BOX_SCORE - 0.01), photo)) == 1
    assert coco.detect(context(BOX_SCORE + 0.01), photo) == []


def pose_with_scores(scores: np.ndarray) -> Pose:
    """One person whose keypoint scores are given (all at one point of a box)."""
    return Pose(
        box=np.array([10, 20, 300, 600], np.float32),
        box_score=1.0,
        keypoints=np.tile(np.array([[50.0, 60.0]], np.float32), (len(scores), 1)),
        keypoint_scores=scores.astype(np.float32),
        score=3.0,
    )


def answer_with(
    function: AlphaPoseFunction,
    poses: list[Pose],
    monkeypatch: pytest.MonkeyPatch,
    image: Image.Image,
    received: list[np.ndarray] | None = None,
) -> list[models.LabeledShapeRequest]:
    """``detect`` with the pipeline's persons replaced by ``poses``, after the SDK's validation; the
    pipeline's input goes to ``received``."""

    class Pipeline:
        skeleton = function.predictor.pipeline.skeleton
        preset = function.predictor.pipeline.preset

        def __call__(self, pixels: np.ndarray) -> list[Pose]:
            if received is not None:
                received.append(pixels)
            return poses

    monkeypatch.setattr(function.predictor, "pipeline", Pipeline())
    return validated(function, function.detect(context(), image))


def test_keypoint_threshold_sets_outside(
    weights_dir: Path, photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keypoint scores are set here: the synthetic pose network's heatmap maxima exceed 1 on the photo."""
    function = load(weights_dir, "keypoint_threshold=float:0.5")
    assert function.predictor.settings.keypoint_threshold == 0.5
    scores = np.linspace(0.05, 0.95, function.predictor.pipeline.skeleton.num_keypoints, dtype=np.float32)
    (person,) = answer_with(function, [pose_with_scores(scores)], monkeypatch, photo)
    assert [e.outside for e in person.elements] == (scores < 0.5).tolist()
    # a person with every keypoint outside is left out, as in the Nuclio answer
    assert answer_with(function, [pose_with_scores(scores / 2)], monkeypatch, photo) == []
    # without the parameter: the Nuclio function's default (ALPHAPOSE_KEYPOINT_THRESHOLD, else Config's)
    assert config_from_parameters({}).keypoint_threshold == Config().keypoint_threshold


def test_scores_are_clipped_to_what_the_sdk_accepts(
    coco: AlphaPoseFunction, photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heatmap maxima are not probabilities; the SDK refuses a ``score`` outside [0, 1]."""
    scores = np.linspace(-0.2, 1.3, coco.predictor.skeleton.num_keypoints, dtype=np.float32)
    (person,) = answer_with(coco, [pose_with_scores(scores)], monkeypatch, photo)
    assert [e.score for e in person.elements] == pytest.approx(np.clip(scores, 0, 1).tolist())
    thresholds = np.asarray(coco.predictor.keypoint_thresholds())  # 0.4 each
    assert [e.outside for e in person.elements] == (scores < thresholds).tolist()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_the_pipeline_gets_the_pixels_of_the_nuclio_path(
    coco: AlphaPoseFunction, photo: Image.Image, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The same file gives the pipeline the same RGB array through the SDK (Pillow decodes, then our
    conversion) as through the Nuclio request path (alpha dropped, palettes applied, 16 bits scaled)."""
    frame = photo.resize((96, 64)).convert(mode if mode != "I;16" else "I")
    if mode == "I;16":
        frame = Image.fromarray((np.asarray(frame.convert("L"), np.uint16) * 257).astype(np.uint16))
    file = io.BytesIO()
    frame.save(file, "PNG")
    with Image.open(io.BytesIO(file.getvalue())) as decoded:
        assert decoded.mode == mode
        received = []
        answer_with(coco, [], monkeypatch, decoded, received)
    np.testing.assert_array_equal(received[0], decode_image(file.getvalue(), max_pixels=10**6))


def test_a_jpeg_frame_gets_the_pixels_of_the_nuclio_path(
    coco: AlphaPoseFunction, photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For JPEG frames the Nuclio path decodes with OpenCV, the SDK with Pillow: the same pixels."""
    received = []
    answer_with(coco, [], monkeypatch, photo, received)
    np.testing.assert_array_equal(received[0], decode_image(PHOTO.read_bytes(), max_pixels=10**7))


def test_parameters_default_as_the_nuclio_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHAPOSE_KEYPOINT_THRESHOLD", "0.25")
    monkeypatch.setenv("ALPHAPOSE_PRESET", "fastpose_res50_halpe26")
    config = config_from_parameters({})
    assert config == Config.from_env()
    assert (config.keypoint_threshold, config.options.preset) == (0.25, "fastpose_res50_halpe26")
    config = config_from_parameters(
        cli_parameters(
            "keypoint_threshold=float:0.5",
            "preset=str:fastpose_res50_coco",
            "device=str:cuda:1",
            "weights_dir=str:~/w",
            "detector=str:yolov3-spp",
            "precision=str:bf16",
        )
    )
    assert config == dataclasses.replace(
        Config.from_env(),
        keypoint_threshold=0.5,
        options=dataclasses.replace(
            Config.from_env().options,
            preset="fastpose_res50_coco",
            device="cuda:1",
            detector="yolov3-spp",
            precision="bf16",
        ),
        weights_dir=Path("~/w").expanduser(),
    )
    assert config_from_parameters(cli_parameters("keypoint_threshold=int:1")).keypoint_threshold == 1.0


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            "preset=str:fastpose_res152",
            "preset='fastpose_res152': unknown preset; choose one of: fastpose_res50_coco",
        ),
        ("keypoint_threshold=float:1.5", r"keypoint_threshold='1.5': must be in \[0, 1\]"),
        (
            "keypoint_threshold=str:0.5",
            "keypoint_threshold='0.5': expected a number, pass it as -p keypoint_th",
        ),
        ("keypoint_threshold=bool:true", "keypoint_threshold=True: expected a number"),
        ("device=str:gpu", "device='gpu': expected auto, cpu, cuda or cuda:N"),
        ("preset=int:3", "preset=3: expected text, pass it as -p preset=str:VALUE"),
        ("detector=str:yolov9", "detector='yolov9': unknown detector; choose one of: yolov3-spp"),
        ("precision=str:fp64", "precision='fp64': expected one of auto, fp32, bf16, fp16"),
        ("flip=bool:true", "unknown parameter.s. flip; this function takes: weights_dir, preset, detector"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(argument: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^(invalid parameter )?{message}"):
        config_from_parameters(cli_parameters(argument))


def test_readme_lists_every_parameter_as_cvat_cli_spells_it() -> None:
    """The settings table's "SDK parameter" column holds what the function takes, and the examples of
    the section on cvat-cli parse."""
    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"\| `(\w+)=(\w+):` \|", readme)
    assert listed == [(name, kind.__name__) for name, kind in PARAMETERS.items()]
    section = readme.split("## Without Nuclio", 1)[1].split("\n## ", 1)[0]
    examples = "".join(re.findall(r"```sh\n(.*?)```", section, re.DOTALL))
    arguments = re.findall(r"-p (\S+)", examples)
    assert arguments
    config_from_parameters(cli_parameters(*arguments))  # every example parses and passes the checks


def test_missing_weights_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(
        WeightsError, match=r"missing weights in .*\(parameter weights_dir selects the directory\)"
    ):
        load(tmp_path)


@pytest.mark.slow  # cvat-cli in a subprocess
def test_cvat_cli_auto_annotates_a_task_on_a_stub_server(weights_dir: Path, tmp_path: Path) -> None:
    """``cvat-cli task auto-annotate ... --function-file cvat_function.py`` end to end, run from another
    directory as a user runs it: cvat-cli loads the file by path and does not put the checkout on
    sys.path. The stub server records the annotations the SDK uploads."""
    labels = registered_labels(detection_spec(get_preset("fastpose_res50_halpe26").skeleton))
    with Image.open(PHOTO) as image:
        size = image.size
    task = ImageTask(5, cvat_labels(labels, task_id=5), [("people.jpg", PHOTO.read_bytes())], [size])
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPOSE_", "CVAT_", "XDG_"))}
    environment |= {
        "ALPHAPOSE_DETECTOR_SIZE": "160",
        "ALPHAPOSE_DEVICE": "cpu",
        "CVAT_ACCESS_TOKEN": "token",
        "HOME": str(tmp_path),  # cvat-cli's cache and profiles
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        # cvat-cli's own packages stay importable; the checkout must not be
        "PYTHONPATH": os.pathsep.join(
            p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT
        ),
    }
    with serve(task) as url:
        command = [sys.executable, "-m", "cvat_cli", "--server-host", url, "task", "auto-annotate", "5"]
        command += ["--function-file", str(FUNCTION_FILE), "-p", f"weights_dir=str:{weights_dir}"]
        command += ["-p", "preset=str:fastpose_res50_halpe26", "--conf-threshold", "0.5"]
        result = subprocess.run(
            command, cwd=tmp_path, env=environment, capture_output=True, text=True, check=False
        )
    assert result.returncode == 0, result.stderr
    assert task.unexpected == []
    (upload,) = task.uploads
    (person,) = upload["shapes"]
    (label,) = task.labels
    assert (person["type"], person["label_id"], person["frame"], person["source"]) == (
        "skeleton",
        label["id"],
        0,
        "auto",
    )
    assert [e["label_id"] for e in person["elements"]] == [s["id"] for s in label["sublabels"]]
    assert person["score"] == pytest.approx(BOX_SCORE)


def test_cvat_cli_registers_the_function_for_an_agent(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cvat-cli function create-native`` registers one ``person`` skeleton with the preset's keypoints."""
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "token")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    task = ImageTask(5, [], [], [])
    with serve(task) as url:
        arguments = ["--server-host", url, "function", "create-native", "AlphaPose"]
        arguments += ["--function-module", MODULE, "-p", f"weights_dir=str:{weights_dir}"]
        assert cvat_cli_main(arguments) == 0
    assert capsys.readouterr().out.strip() == "1"  # the new function's id, printed for run-agent
    assert task.unexpected == []
    (function,) = task.functions
    assert (function["provider"], function["kind"], function["name"]) == ("native", "detector", "AlphaPose")
    (label,) = function["labels_v2"]
    assert (label["name"], label["type"]) == ("person", "skeleton")
    assert [s["name"] for s in label["sublabels"]] == list(
        get_preset("fastpose_res50_coco").skeleton.keypoints
    )
