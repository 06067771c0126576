"""Precision int8: OpenVINO's export quantized by NNCF on the user's calibration images.

Agreement is checked on a seeded, well-conditioned network (He-initialised convolutions, ReLU) standing
in for the pose network, calibrated through the library's own path (image files read from a directory,
crops cut and normalised as a request's) and run on crops of other images. Its bound is derived from
the quantizers rather than measured: an 8-bit quantizer with step ``range / steps`` adds rounding noise
of RMS ``step / sqrt(12)``, i.e. ``k / (steps * sqrt(12))`` of its signal's RMS where ``k`` is the
signal's range over its RMS. Each convolution rounds its input (asymmetric, 255 steps over the
calibrated range) and its weights (symmetric per output channel, 254 steps; 127 in the first layer,
NNCF's default overflow fix); a norm-preserving network passes relative noise on unchanged and the
roundings are independent, so the output's relative RMS error is about the root sum of squares of
every rounding's share, with each ``k`` read off the network and the calibration inputs. Calibrating
on the wrong channel order or without the mean subtracted clips what the network sees and fails it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from coco_set import evaluate_argv, write_set
from PIL import Image
from torch import nn

from alphapose.cvat.errors import ConfigError
from alphapose.cvat.settings import Config
from alphapose.engines import export as export_module
from alphapose.engines.calibration import FRAME_READING, CalibrationSet, pose_inputs
from alphapose.engines.export import CacheError
from alphapose.engines.precision import resolve_precision
from alphapose.engines.prepare import Calibration, check_engines, prepare_network
from alphapose.errors import OptionError, PrecisionError
from alphapose.options import PipelineOptions
from alphapose.pipeline import PosePipeline
from alphapose.pose.transforms import PIXEL_MEANS, crop_persons

INT8 = resolve_precision("int8", "cpu")
CPU = torch.device("cpu")
CROP = (64, 48)  # the stand-in's input (height, width)
CHANNELS = (3, 16, 16, 16, 8)
PERSON = np.array([[20.0, 10.0, 120.0, 110.0]], dtype=np.float32)


def stand_in() -> nn.Module:
    """Four seeded convolutions, He-initialised (each keeps its input's scale), ReLU between them."""
    generator = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    for i, (inputs, outputs) in enumerate(pairwise(CHANNELS)):
        conv = nn.Conv2d(inputs, outputs, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2 / (inputs * 9)) ** 0.5)
            conv.bias.zero_()
        layers += [conv, nn.ReLU()] if i < len(CHANNELS) - 2 else [conv]
    return nn.Sequential(*layers).eval()


def frame(seed: int, width: int = 160, height: int = 120) -> np.ndarray:
    """An RGB frame of smooth reddish regions: its channels' ranges lie far apart (red high, blue low),
    as a scene's often do, so a swapped channel order changes what the network sees."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (height // 16, width // 16, 3))
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = np.array([150, 60, 0]), np.array([255, 160, 60])
    return np.clip(low + smooth * (high - low) + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(
        np.uint8
    )


def write_frames(directory: Path, seeds: range = range(8)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        Image.fromarray(frame(seed)).save(directory / f"frame{seed:02d}.png")
    return directory


def one_person(image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A detector that finds one person, the same box in every frame."""
    return torch.from_numpy(PERSON), torch.tensor([0.9])


def derived_bound(model: nn.Module, inputs: list[np.ndarray]) -> float:
    """The relative RMS error the quantizers' rounding explains (module docstring), from ``model``'s
    weights and its activations on ``inputs``."""
    x = torch.from_numpy(np.concatenate(inputs))
    shares, first = [], True
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Conv2d):
                span = float((x.max() - x.min()) / x.pow(2).mean().sqrt())
                weights = layer.weight.flatten(1)
                weight_span = float((2 * weights.abs().amax(1) / weights.pow(2).mean(1).sqrt()).max())
                shares += [span / 255, weight_span / (127 if first else 254)]
                first = False
            x = layer(x)
    return float(np.sqrt(sum(s * s for s in shares) / 12))


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(((ours - reference) ** 2).mean() / (reference**2).mean()))


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The stand-in, its calibration set read through the library, and crops of other frames."""
    directory = tmp_path_factory.mktemp("int8")
    calibration = CalibrationSet.from_directory(write_frames(directory / "frames"))
    weights = directory / "stand_in.pth"
    weights.write_bytes(b"the stand-in's weights file")
    model = stand_in()
    crops = np.concatenate(
        [
            crop_persons(frame(100 + seed), np.array([[10, 5, 150, 115]], np.float32), CROP)[0]
            for seed in range(6)
        ]
    )
    with torch.no_grad():
        reference = model(torch.from_numpy(crops)).numpy()
    inputs = pose_inputs(calibration, one_person, CROP)
    return {
        "calibration": calibration,
        "weights": weights,
        "model": model,
        "crops": crops,
        "reference": reference,
        "inputs": inputs,
        "bound": derived_bound(model, inputs),
    }


def quantized_run(case: dict[str, object], inputs: Callable[[], list[np.ndarray]], digest: str) -> np.ndarray:
    runtime, chosen = prepare_network(
        "pose", "openvino", case["model"], INT8, case["weights"], (3, *CROP), Calibration(digest, inputs)
    )
    assert chosen.engine == "openvino" and chosen.description.endswith(" int8")
    return runtime(torch.from_numpy(case["crops"])).numpy()


def test_int8_stays_within_the_bound_its_quantizers_explain(case: dict[str, object]) -> None:
    calibration = case["calibration"]
    made = quantized_run(case, lambda: pose_inputs(calibration, one_person, CROP), calibration.digest)
    error = relative_error(made, case["reference"])
    assert 0 < error <= case["bound"] < 0.03, (error, case["bound"])
    # a second start runs the cached model, without calibrating again
    cached = quantized_run(case, lambda: pytest.fail("calibrated again"), calibration.digest)
    np.testing.assert_array_equal(cached, made)


@pytest.mark.slow
def test_the_bound_fails_on_calibration_in_bgr_order_or_without_the_mean(case: dict[str, object]) -> None:
    good = case["inputs"]
    means = np.asarray(PIXEL_MEANS, np.float32)[None, :, None, None]
    wrong = {
        "bgr": [np.ascontiguousarray(x[:, ::-1]) for x in good],
        "no mean": [x + means for x in good],
    }
    for name, inputs in wrong.items():
        made = quantized_run(case, lambda inputs=inputs: inputs, f"deliberately wrong: {name}")
        assert relative_error(made, case["reference"]) > 3 * case["bound"], name


def test_calibration_inputs_are_what_the_networks_see(tmp_path: Path) -> None:
    """The detector's letterboxed input of its family and the pose network's normalised crops, cut from
    the files as decoded RGB; an image without a detected person gives its whole frame."""
    from alphapose.detection.person_detector import FAMILIES
    from alphapose.engines.calibration import detector_inputs

    calibration = CalibrationSet.from_directory(write_frames(tmp_path / "frames", range(2)))
    image = frame(0)
    prepared = detector_inputs(calibration, FAMILIES["yolox"].prepare, 64)
    expected = FAMILIES["yolox"].prepare([image], 64, CPU)[0].numpy()
    assert len(prepared) == 2
    np.testing.assert_array_equal(prepared[0], expected)
    crops = pose_inputs(calibration, one_person, CROP)
    np.testing.assert_array_equal(crops[0], crop_persons(image, PERSON, CROP)[0].numpy())
    nobody = pose_inputs(calibration, lambda image: (torch.zeros(0, 4), torch.zeros(0)), CROP)
    whole = np.array([[0, 0, 160, 120]], np.float32)
    np.testing.assert_array_equal(nobody[0], crop_persons(image, whole, CROP)[0].numpy())


def test_a_set_is_named_by_its_files_names_and_contents(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "a", range(3))
    (frames / "notes.txt").write_text("not an image: left out")
    first = CalibrationSet.from_directory(frames)
    assert [p.name for p in first.files] == ["frame00.png", "frame01.png", "frame02.png"]
    copy = shutil.copytree(frames, tmp_path / "b")
    assert CalibrationSet.from_directory(copy).digest == first.digest
    (copy / "frame02.png").rename(copy / "frame03.png")
    assert CalibrationSet.from_directory(copy).digest != first.digest
    Image.fromarray(frame(9)).save(frames / "frame02.png")
    assert CalibrationSet.from_directory(frames).digest != first.digest
    # the cache key adds how the frames are read: models cached from frames read another way are made again
    assert first.cache_key != first.digest and FRAME_READING in first.cache_key


@pytest.mark.slow
def test_a_new_calibration_set_quantizes_again_and_a_foreign_cache_entry_is_refused(
    tmp_path: Path,
) -> None:
    weights = tmp_path / "net.pth"
    weights.write_bytes(b"weights")
    model, shape = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval(), (3, 8, 8)
    inputs = [np.random.default_rng(i).standard_normal((1, *shape)).astype(np.float32) for i in range(2)]

    def prepared(digest: str) -> str:
        return prepare_network(
            "pose", "openvino", model, INT8, weights, shape, Calibration(digest, lambda: inputs)
        )[1].note

    assert prepared("set one").startswith("quantized to")
    assert prepared("set one").startswith("cached int8 model")
    assert prepared("set two").startswith("quantized to")
    models = sorted((tmp_path / "onnx").glob("*-int8.xml"))
    assert len(models) == 2 and not list((tmp_path / "onnx").glob(".*"))
    one, two = (json.loads(p.with_suffix(".json").read_text()) for p in models)
    assert {k for k in one if one[k] != two[k]} == {"calibration"}
    # a record that says another set made the model under this name
    record = models[0].with_suffix(".json")
    recorded = json.loads(record.read_text())
    digest = recorded["calibration"]
    record.write_text(json.dumps({**recorded, "calibration": "another set"}))
    with pytest.raises(CacheError, match=r"made from other inputs than its name says \(differing: calibrat"):
        prepared(digest)
    record.unlink()
    with pytest.raises(CacheError, match="no readable record of what it was made from"):
        prepared(digest)
    record.write_text(json.dumps(recorded))
    models[0].with_suffix(".bin").unlink()
    with pytest.raises(CacheError, match="has lost its weights file"):
        prepared(digest)


def test_beside_read_only_weights_it_quantizes_for_the_process_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "net.pth"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(export_module, "writable", lambda directory: False)
    model, shape = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval(), (3, 8, 8)
    inputs = [np.ones((1, *shape), np.float32)]
    runtime, chosen = prepare_network(
        "pose", "openvino", model, INT8, weights, shape, Calibration("s", lambda: inputs)
    )
    assert "is not writable" in chosen.note and "quantizes again" in chosen.note
    assert runtime(torch.ones(1, *shape)).shape == (1, 4, 8, 8)
    assert not (tmp_path / "onnx").exists() or not list((tmp_path / "onnx").iterdir())


@pytest.mark.parametrize(
    ("problem", "message"), [("missing", "no such directory"), ("empty", "no image files in it")]
)
def test_a_bad_calibration_set_is_refused_naming_the_variable_the_flag_and_the_parameter(
    tmp_path: Path, weights_dir: Path, problem: str, message: str
) -> None:
    directory = tmp_path / "frames"
    if problem == "empty":
        directory.mkdir()
    environ = {
        "ALPHAPOSE_PRECISION": "int8",
        "ALPHAPOSE_ENGINE": "openvino",
        "ALPHAPOSE_WEIGHTS_DIR": str(weights_dir),
        "ALPHAPOSE_DETECTOR": "yolox-s",
        "ALPHAPOSE_DEVICE": "cpu",
    }
    with pytest.raises(ConfigError, match=f"ALPHAPOSE_CALIBRATION_DIR='{directory}': {message}"):
        Config.from_env({**environ, "ALPHAPOSE_CALIBRATION_DIR": str(directory)}).load_pipeline()
    with pytest.raises(ConfigError, match=f"--calibration '{directory}': {message}"):
        Config.from_env(environ, flags={"--calibration": str(directory)}).load_pipeline()
    with pytest.raises(ConfigError, match=f"parameter calibration='{directory}': {message}"):
        Config.from_env(environ, parameters={"calibration": str(directory)}).load_pipeline()


def test_a_calibration_file_that_is_no_image_is_refused_naming_it(tmp_path: Path) -> None:
    directory = write_frames(tmp_path / "frames", range(1))
    (directory / "broken.jpg").write_bytes(b"not a JPEG")
    with pytest.raises(
        OptionError, match=r"broken\.jpg: the file is not an image file of a format Pillow reads"
    ) as caught:
        list(CalibrationSet.from_directory(directory).images())
    assert caught.value.option == "calibration"


def test_int8_without_a_calibration_set_or_outside_openvino_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"ALPHAPOSE_PRECISION='int8'.*ALPHAPOSE_CALIBRATION_DIR, --calibration"
    ):
        Config.from_env({"ALPHAPOSE_PRECISION": "int8", "ALPHAPOSE_ENGINE": "openvino"})
    options = PipelineOptions(precision="int8", engine="openvino", calibration="frames")
    assert options.calibration == "frames"
    assert PipelineOptions(precision="fp32", calibration="frames").precision == "fp32"  # read with int8 only
    with pytest.raises(OptionError, match="the detector would run in torch; use engine openvino") as caught:
        check_engines("pose=openvino", CPU, INT8)
    assert caught.value.option == "engine"
    with pytest.raises(OptionError, match="the pose would run in torch"):
        check_engines("detector=openvino", CPU, INT8)
    with pytest.raises(OptionError, match=r"openvino \(bf16, int8\)"):
        check_engines("onnxruntime", CPU, INT8)
    with pytest.raises(PrecisionError, match="int8 runs on the CPU only"):
        resolve_precision("int8", "cuda")
    assert check_engines("openvino", CPU, INT8) == {"detector": "openvino", "pose": "openvino"}


def test_int8_with_the_engine_left_at_its_default_names_the_precision(
    weights_dir: Path, tmp_path: Path
) -> None:
    """The user who set only the precision hears about the precision and the setting that completes it,
    not about an engine they never set; one who chose an engine that keeps torch hears about the engine."""
    words = r"int8 runs on engine openvino .*set engine=openvino \(ALPHAPOSE_ENGINE, --engine\)"
    for engine in ("torch", " Torch "):
        with pytest.raises(OptionError, match=words) as caught:
            check_engines(engine, CPU, INT8)
        assert (caught.value.option, caught.value.value) == ("precision", "int8")
    options = PipelineOptions(precision="int8", calibration=write_frames(tmp_path / "frames", range(1)))
    with pytest.raises(OptionError, match=words) as caught:
        PosePipeline.from_weights_dir(weights_dir, options, device="cpu")
    assert caught.value.option == "precision"
    config = Config.from_env({"ALPHAPOSE_PRECISION": "int8", "ALPHAPOSE_CALIBRATION_DIR": "frames"})
    assert str(config.explain(caught.value)).startswith("invalid ALPHAPOSE_PRECISION='int8': int8 runs on")
    with pytest.raises(OptionError, match="the detector and pose would run in torch") as caught:
        check_engines("detector=torch,pose=torch", CPU, INT8)
    assert caught.value.option == "engine"


def test_without_the_quantizer_int8_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alphapose.engines import openvino_engine

    monkeypatch.setattr(openvino_engine, "find_spec", lambda name: None)
    weights = tmp_path / "net.pth"
    weights.write_bytes(b"weights")
    with pytest.raises(OptionError, match=r"needs the nncf package.*pip install -r requirements-int8\.txt"):
        prepare_network(
            "pose", "openvino", nn.Conv2d(3, 4, 1), INT8, weights, (3, 8, 8), Calibration("s", lambda: [])
        )


@pytest.mark.slow
def test_the_pipeline_in_int8_end_to_end(linked_weights_dir: Path, tmp_path: Path) -> None:
    """YOLOX-s and FastPose quantized on frames, cached, and answering as the fp32 pipeline does where the
    synthetic weights fix the answer (one person covering the image)."""
    from alphapose.pipeline import PosePipeline
    from tools.synthetic_images import synthetic_photo

    frames = tmp_path / "frames"
    frames.mkdir()
    for seed in range(3):
        Image.fromarray(synthetic_photo(320, 240, seed=seed)).save(frames / f"{seed}.jpg")
    weights = linked_weights_dir
    settings = {"detector": "yolox-s", "detector_size": 160, "device": "cpu", "engine": "openvino"}
    pipeline = PosePipeline.from_weights_dir(
        linked_weights_dir, precision="int8", calibration=frames, **settings
    )
    for network in ("detector", "pose"):
        assert pipeline.engines[network].description.endswith(" int8")
        assert pipeline.engines[network].note.startswith("quantized to")
    image = synthetic_photo(320, 240, seed=7)
    (pose,) = pipeline(image)
    (reference,) = PosePipeline.from_weights_dir(weights, **{**settings, "engine": "torch"})(image)
    np.testing.assert_allclose(pose.box, reference.box, atol=1.0)
    assert pose.keypoints.shape == reference.keypoints.shape == (17, 2)
    again = PosePipeline.from_weights_dir(
        linked_weights_dir, precision="int8", calibration=frames, **settings
    )
    assert all(e.note.startswith("cached int8 model") for e in again.engines.values())
    np.testing.assert_array_equal(again(image)[0].keypoints, pose.keypoints)
    records = [json.loads(p.read_text()) for p in (linked_weights_dir / "onnx").glob("*-int8.json")]
    key = CalibrationSet.from_directory(frames).cache_key  # the set, and how its frames were read
    assert len(records) == 2 and {record["calibration"] for record in records} == {key}


@pytest.mark.slow
def test_evaluate_compares_int8_with_fp32(
    linked_weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.cli import main

    annotations = write_set(tmp_path)
    out = tmp_path / "results.json"
    argv = evaluate_argv(annotations, tmp_path / "images", out)
    model = [
        "--weights-dir",
        str(linked_weights_dir),
        "--detector",
        "yolox-s",
        "--detector-size",
        "160",
        "--device",
        "cpu",
    ]
    # the evaluation's own images calibrate: the frames a user would quantize on
    int8 = ["--engine", "openvino", "--calibration", str(tmp_path / "images"), "--compare", "precision=int8"]
    assert main([*argv, *model, "--gt-boxes", *int8]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed[1:4]] == ["this", "--compare", "difference"]
    assert printed[4].startswith("keypoint displacement over 2 images, px:")
    assert len(json.loads((tmp_path / "results-compare.json").read_text())) == 2


def test_the_quantized_graph_runs_each_silu_as_one_swish(tmp_path: Path) -> None:
    """YOLOX's x * sigmoid(x) must reach the quantizer as one Swish, which runs fused into its convolution:
    quantized as a sigmoid and a product it costs a float sigmoid and a re-quantization per convolution
    (docs/precision.md, "int8")."""
    import openvino

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1)).eval()
    weights = tmp_path / "silu.pth"
    weights.write_bytes(b"the stand-in's weights file")
    inputs = [np.random.default_rng(seed).normal(size=(1, 3, *CROP)).astype(np.float32) for seed in range(4)]
    prepare_network("pose", "openvino", model, INT8, weights, (3, *CROP), Calibration("silu", lambda: inputs))
    (cached,) = (tmp_path / export_module.CACHE_DIRECTORY).glob("*-int8.xml")
    operations = {op.get_type_name() for op in openvino.Core().read_model(str(cached)).get_ops()}
    assert "Swish" in operations and "Sigmoid" not in operations, sorted(operations)
