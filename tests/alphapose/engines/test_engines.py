"""The engines (alphapose/engines): each runtime against our PyTorch network and the official recordings.

Parity uses the golden fixtures' inputs and seeded weights (tests/golden): the pose network on the
fixture's two crops (pose_nets.npz), YOLOX-s on the official network inputs of the recorded views
(yolox_inputs.npz), both exported once per module and run by each runtime. Tolerances come from the
fixtures' recorded conditions (tests/golden/conditioning.py), the same as the golden tests': another
float32 implementation of the same network, against the official outputs and against our PyTorch
network. The same comparisons must fail on a wrong input layout and on crops without the mean subtracted.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from golden_yolox import (
    MANIFEST,
    Tolerance,
    assert_predictions_match,
    network,
    network_tolerance,
    official_input,
)
from repo_paths import GOLDEN_DATA, REPO
from torch import nn

from alphapose import engines
from alphapose.cvat.errors import ConfigError
from alphapose.cvat.sdk_function import PARAMETERS
from alphapose.cvat.settings import Config
from alphapose.engines import ENGINES, parse_engines
from alphapose.engines import export as export_module
from alphapose.engines.export import cache_path, export_onnx, exported
from alphapose.engines.precision import resolve_precision
from alphapose.engines.prepare import RuntimeNetwork, check_engines, describe, prepare_network
from alphapose.errors import OptionError
from alphapose.options import PipelineOptions
from alphapose.pose.models.resnet import DeformConv2d
from alphapose.pose.transforms import normalize_crop
from alphapose.weights.load import load_pose_model
from tests.golden import conditioning, seeded
from tests.golden.gen_pose_nets import FIXTURE

RUNTIMES = [name for name in ENGINES if name != "torch"]
POSE_PRESET = "fastpose_res50_coco"
FP32 = resolve_precision("fp32", "cpu")
GOLDEN = GOLDEN_DATA


@cache
def compiled(engine: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The export compiled by the runtime, once per test session."""
    return ENGINES[engine].driver().compile_export(path, FP32, torch.get_num_threads())


def pose_case(preset: str, directory: Path, channels_last: bool = True) -> dict[str, object]:
    """A seeded pose network of the golden fixture as the pipeline loads it, its ONNX export, the
    fixture's crops, the official heatmaps and our PyTorch ones, and the fixture's tolerance."""
    model = load_pose_model(preset, seeded.write_pose_checkpoint(preset, directory), fold_batch_norm=True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    with np.load(GOLDEN / FIXTURE) as data:
        pixels, official = data["pixels"], data[preset]
        tolerance = conditioning.tolerance(data[f"{preset}_condition"], np.abs(official).max())
    batch = np.stack([normalize_crop(p) for p in pixels])
    with torch.inference_mode():
        ours = model(torch.from_numpy(batch)).numpy()
    onnx = export_onnx(model, batch.shape[1:], directory / f"{preset}.onnx")
    return {
        "batch": batch,
        "pixels": pixels,
        "official": official,
        "ours": ours,
        "onnx": onnx,
        "tolerance": tolerance,
    }


@pytest.fixture(scope="module")
def pose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The seeded COCO FastPose (folded, channels-last) and what its engine tests compare with."""
    return pose_case(POSE_PRESET, tmp_path_factory.mktemp("engine_pose"))


def assert_heatmaps_match(heatmaps: np.ndarray, pose: dict[str, object]) -> None:
    ours, official = pose["ours"], pose["official"]
    assert heatmaps.shape == ours.shape and heatmaps.dtype == np.float32
    np.testing.assert_allclose(heatmaps, ours, rtol=0, atol=pose["tolerance"])
    np.testing.assert_allclose(heatmaps, official, rtol=0, atol=pose["tolerance"])


@pytest.mark.parametrize("engine", RUNTIMES)
def test_pose_network_matches_pytorch_and_the_official(engine: str, pose: dict[str, object]) -> None:
    runtime = RuntimeNetwork(compiled(engine, pose["onnx"]), engine)
    batch = torch.from_numpy(pose["batch"])
    assert_heatmaps_match(runtime(batch).numpy(), pose)
    # a channels-last tensor, one crop at a time (the batch dimension is dynamic): the same maps
    channels_last = batch.to(memory_format=torch.channels_last)
    assert_heatmaps_match(np.concatenate([runtime(channels_last[i : i + 1]).numpy() for i in range(2)]), pose)


@pytest.mark.parametrize("engine", RUNTIMES)
def test_pose_comparison_fails_on_a_wrong_layout_or_a_missing_mean(
    engine: str, pose: dict[str, object]
) -> None:
    run = compiled(engine, pose["onnx"])
    pixels = pose["pixels"]
    # HWC bytes read as CHW: the crop's values in the wrong places
    wrong_layout = np.stack([normalize_crop(p).transpose(1, 2, 0).reshape(3, 256, 192) for p in pixels])
    no_mean = (pixels.astype(np.float32) / 255).transpose(0, 3, 1, 2).copy()
    for bad in (wrong_layout, no_mean):
        with pytest.raises(AssertionError):
            assert_heatmaps_match(run(np.ascontiguousarray(bad)), pose)


@pytest.fixture(scope="module")
def yolox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The seeded YOLOX-s of the golden fixture (folded, channels-last), its ONNX export and its raw
    predictions on each view."""
    tmp = tmp_path_factory.mktemp("engine_yolox")
    model = network("yolox-s", tmp, True)
    size = MANIFEST["input_size"]
    references = {view: predict(model, view).numpy() for view in MANIFEST["cases"]["yolox-s"]["views"]}
    return {"references": references, "onnx": export_onnx(model, (3, size, size), tmp / "yolox.onnx")}


def predict(model: nn.Module, view: str) -> torch.Tensor:
    """Raw predictions on the view's official network input (tests/golden: rule 1)."""
    with torch.inference_mode():
        return model(torch.from_numpy(official_input(view))[None].float())


def view_tolerance(view: str) -> Tolerance:
    raw = np.load(GOLDEN / "yolox_s_raw.npz")
    return network_tolerance("yolox-s", view, np.abs(raw[f"{view}_rows"][:, :4]).max())


# The detector's weights take seconds to calibrate and each view a second per runtime: slow cases.
@pytest.mark.slow
@pytest.mark.parametrize("engine", RUNTIMES)
def test_yolox_matches_pytorch_and_the_official(engine: str, yolox: dict[str, object]) -> None:
    runtime = RuntimeNetwork(compiled(engine, yolox["onnx"]), engine, MANIFEST["input_size"])
    for view in MANIFEST["cases"]["yolox-s"]["views"]:
        predictions, tolerance = predict(runtime, view), view_tolerance(view)
        ours, theirs = predictions.numpy(), yolox["references"][view]
        np.testing.assert_allclose(ours[..., :4], theirs[..., :4], rtol=0, atol=tolerance.box_atol)
        np.testing.assert_allclose(ours[..., 4:], theirs[..., 4:], rtol=0, atol=tolerance.probability)
        assert_predictions_match(predictions, "yolox-s", view, tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("engine", RUNTIMES)
def test_yolox_comparison_fails_on_channels_in_rgb_order(engine: str, yolox: dict[str, object]) -> None:
    """The detector's input convention is BGR 0..255: RGB input must fail the official comparison."""
    runtime = RuntimeNetwork(compiled(engine, yolox["onnx"]), engine, MANIFEST["input_size"])
    view = MANIFEST["cases"]["yolox-s"]["views"][0]
    hook = runtime.register_forward_pre_hook(lambda module, args: (args[0].flip(1),))
    try:
        predictions = predict(runtime, view)
    finally:
        hook.remove()
    with pytest.raises(AssertionError):
        assert_predictions_match(predictions, "yolox-s", view, view_tolerance(view))


@pytest.mark.slow
def test_deformable_pose_network_runs_in_onnxruntime(tmp_path: Path) -> None:
    """ONNX Runtime has DeformConv (opset 19): the DCN preset's export against ours and the official."""
    case = pose_case("fastpose_dcn_res50_coco", tmp_path, channels_last=False)
    assert_heatmaps_match(compiled("onnxruntime", case["onnx"])(case["batch"]), case)


@pytest.mark.slow
@pytest.mark.parametrize("engine", RUNTIMES)
def test_pipeline_on_an_engine_finds_the_poses_of_pytorch(engine: str, linked_weights_dir: Path) -> None:
    """The whole pipeline (YOLOv3-SPP and FastPose exported) against the PyTorch one on a photo."""
    from alphapose.pipeline import PosePipeline
    from tools.synthetic_images import synthetic_photo

    image = synthetic_photo(640, 480)
    reference = PosePipeline.from_weights_dir(linked_weights_dir, device="cpu")(image)
    pipeline = PosePipeline.from_weights_dir(linked_weights_dir, device="cpu", engine=engine)
    assert {e.engine for e in pipeline.engines.values()} == {engine}
    poses = pipeline(image)
    assert len(poses) == len(reference) > 0
    for ours, theirs in zip(poses, reference, strict=True):
        np.testing.assert_allclose(ours.box, theirs.box, atol=1e-2)
        np.testing.assert_allclose(ours.keypoints, theirs.keypoints, atol=1e-2)
        np.testing.assert_allclose(ours.keypoint_scores, theirs.keypoint_scores, atol=1e-4)


class _Tiny(nn.Module):
    """A network small enough to export in a fraction of a second."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).relu()


def test_export_is_cached_by_the_weights_file_and_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "net.pth"
    weights.write_bytes(b"first")
    model, shape = _Tiny().eval(), (3, 8, 8)
    path, note = _export(model, weights, shape, "onnxruntime", "1.0")
    assert note.startswith("exported to") and path.is_file() and path.parent == tmp_path / "onnx"
    assert _export(model, weights, shape, "onnxruntime", "1.0") == (path, f"cached export {path}")
    weights.write_bytes(b"second")  # another weights file under the same name
    changed, note = _export(model, weights, shape, "onnxruntime", "1.0")
    assert changed != path and note.startswith("exported to")
    assert _export(model, weights, shape, "onnxruntime", "1.1")[0] != changed  # runtime upgrade
    assert _export(model, weights, (3, 16, 16), "onnxruntime", "1.0")[0] != changed  # other input size
    monkeypatch.setattr(export_module, "__version__", "99.0")
    assert _export(model, weights, shape, "onnxruntime", "1.0")[1].startswith("exported to")
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert _export(model, weights, shape, "onnxruntime", "1.0")[1].startswith("exported to")
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 6  # and no partial files left behind
    assert not list((tmp_path / "onnx").glob(".*"))


def _export(*args: object) -> tuple[Path, str]:
    """What :func:`exported` yields for a cache that outlives the block."""
    with exported(*args) as (path, note):  # type: ignore[arg-type]
        return path, note


def test_export_beside_read_only_weights_is_compiled_from_a_temporary_file_then_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "net.pth"
    weights.write_bytes(b"weights")
    # a read-only directory (tests may run as root, whom permissions do not stop)
    monkeypatch.setattr(export_module, "writable", lambda directory: False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with exported(_Tiny().eval(), weights, (3, 8, 8), "openvino", "1.0") as (path, note):
        assert path.is_file() and path.parent.parent == scratch
        assert "is not writable" in note and "exports again" in note
        assert path.name == cache_path(weights, path.stem.split("-")[-1]).name
    assert not path.exists() and not list(scratch.iterdir())
    model, inputs = _Tiny().eval(), torch.randn(2, 3, 8, 8)
    for engine in RUNTIMES:  # each runtime keeps what it compiled once the file is gone
        runtime, chosen = prepare_network("pose", engine, model, FP32, weights, (3, 8, 8))
        assert "is not writable" in chosen.note and not list(scratch.iterdir())
        with torch.inference_mode():
            np.testing.assert_allclose(runtime(inputs), model(inputs), atol=1e-5)
    assert not (tmp_path / "onnx").exists()


def test_runtime_runs_the_cached_export_like_pytorch(tmp_path: Path) -> None:
    weights = tmp_path / "net.pth"
    weights.write_bytes(b"weights")
    model = _Tiny().eval()
    inputs = torch.randn(2, 3, 8, 8)
    for engine in RUNTIMES:
        runtime, chosen = prepare_network("pose", engine, model, FP32, weights, (3, 8, 8))
        assert chosen.engine == engine and chosen.description.startswith(engine)
        with torch.inference_mode():
            np.testing.assert_allclose(runtime(inputs), model(inputs), atol=1e-5)


def test_an_export_that_fails_leaves_the_file_it_would_replace_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "net.onnx"
    export_onnx(_Tiny().eval(), (3, 8, 8), target)
    before = target.read_bytes()

    def half_written(model: nn.Module, args: tuple, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(before[: len(before) // 2])
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(_Tiny().eval(), (3, 8, 8), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


class _Deformable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Conv2d(3, 18, 3, padding=1)
        self.conv = DeformConv2d(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.offset(x))


def test_a_network_openvino_cannot_run_stays_in_pytorch_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = _Deformable().eval()
    with caplog.at_level(logging.WARNING, logger="alphapose.engines"):
        kept, chosen = prepare_network("pose", "openvino", model, FP32, tmp_path / "none.pth", (3, 8, 8))
    assert kept is model and chosen.engine == "torch" and chosen.requested == "openvino"
    assert "openvino cannot run deformable convolutions" in str(chosen)
    assert "runs in PyTorch" in caplog.text and "pose network" in caplog.text
    assert not (tmp_path / "onnx").exists()  # nothing exported
    assert describe({"pose": chosen}).startswith("pose: torch fp32 (openvino cannot run")


def test_engine_names_one_for_both_networks_or_one_each() -> None:
    assert parse_engines("onnxruntime") == {"detector": "onnxruntime", "pose": "onnxruntime"}
    assert parse_engines(" OpenVINO ") == {"detector": "openvino", "pose": "openvino"}
    assert parse_engines("pose=openvino") == {"detector": "torch", "pose": "openvino"}
    assert parse_engines("detector=onnxruntime, pose=openvino") == {
        "detector": "onnxruntime",
        "pose": "openvino",
    }
    assert PipelineOptions().engine == "torch"


@pytest.mark.parametrize("value", ["tensorrt", "detector=tensorrt", "head=torch", "onnx runtime"])
def test_a_bad_engine_is_refused_naming_the_option_the_variable_the_flag_and_the_parameter(
    value: str,
) -> None:
    with pytest.raises(OptionError) as caught:
        PipelineOptions(engine=value)
    assert caught.value.option == "engine" and "onnxruntime" in caught.value.problem
    with pytest.raises(ConfigError, match=f"ALPHAPOSE_ENGINE={value.lower()!r}"):
        Config.from_env({"ALPHAPOSE_ENGINE": value})
    with pytest.raises(ConfigError, match="--engine"):
        Config.from_env({}, flags={"--engine": value})
    assert "engine" in PARAMETERS
    with pytest.raises(ConfigError, match="parameter engine"):
        Config.from_env({}, parameters={"engine": value})


def test_a_runtime_that_is_not_installed_is_refused_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = engines.find_spec
    monkeypatch.setattr(engines, "find_spec", lambda name: None if name == "openvino" else real(name))
    with pytest.raises(
        OptionError, match=r"openvino package is not installed.*pip install -r requirements-openvino\.txt"
    ):
        check_engines("pose=openvino", torch.device("cpu"), FP32)
    check_engines("onnxruntime", torch.device("cpu"), FP32)  # the other runtime is unaffected
    options = PipelineOptions(detector="yolox-s")
    for name in (options.detector_spec.weights.name, options.pose_preset.checkpoint.name):
        (tmp_path / name).write_bytes(b"")  # refused before anything is read
    config = Config.from_env(
        {
            "ALPHAPOSE_ENGINE": "openvino",
            "ALPHAPOSE_WEIGHTS_DIR": str(tmp_path),
            "ALPHAPOSE_DETECTOR": "yolox-s",
            "ALPHAPOSE_DEVICE": "cpu",
        }
    )
    with pytest.raises(ConfigError, match=r"ALPHAPOSE_ENGINE='openvino'.*requirements-openvino.txt"):
        config.load_pipeline()


def test_onnxruntime_refuses_reduced_precision_and_openvino_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from alphapose.engines import openvino_engine

    monkeypatch.setattr(openvino_engine, "capabilities", lambda: ["BF16", "WINOGRAD", "FP32"])
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    bf16 = resolve_precision("bf16", "cpu")
    with pytest.raises(OptionError, match="float32 only"):
        check_engines("onnxruntime", torch.device("cpu"), bf16)
    assert check_engines("openvino", torch.device("cpu"), bf16)["pose"] == "openvino"
    with pytest.raises(OptionError, match="CPU only"):
        check_engines("openvino", torch.device("cuda"), FP32)


def test_openvino_refuses_a_reduced_precision_its_plugin_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rather than compute in float32 under a bf16 label (a CPU without the units), or fail compiling on
    a layer without a kernel (oneDNN capped below the precision's instructions)."""
    from alphapose.engines import openvino_engine

    cpu, bf16, fp16 = torch.device("cpu"), resolve_precision("bf16", "cpu"), resolve_precision("fp16", "cpu")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(openvino_engine, "capabilities", lambda: ["WINOGRAD", "FP32", "INT8"])
    with pytest.raises(OptionError, match=r"cannot run bf16 on this CPU \(it lists WINOGRAD, FP32, INT8\)"):
        check_engines("openvino", cpu, bf16)
    assert check_engines("openvino", cpu, FP32)["detector"] == "openvino"
    monkeypatch.setattr(openvino_engine, "capabilities", lambda: ["BF16", "WINOGRAD", "FP32"])
    with pytest.raises(OptionError, match="cannot run fp16 on this CPU"):
        check_engines("openvino", cpu, fp16)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    with pytest.raises(OptionError, match="ONEDNN_MAX_CPU_ISA=AVX2 leaves openvino's CPU plugin no bf16"):
        check_engines("detector=openvino", cpu, bf16)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert check_engines("openvino", cpu, bf16)["pose"] == "openvino"


def test_openvino_lists_its_capabilities_on_this_cpu() -> None:
    from alphapose.engines import openvino_engine

    assert "FP32" in openvino_engine.capabilities()


def test_library_version_is_the_package_version() -> None:
    import tomllib

    import alphapose

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert alphapose.__version__ == pyproject["project"]["version"]


def test_export_command_names_the_flag_of_a_bad_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from alphapose.engines.__main__ import main

    args = ["--preset", "fastpose_res50_coco", "--detector", "yolox-s", "--dir", str(tmp_path)]
    assert main(["--engine", "tensorrt", *args]) == 2
    assert "error: --engine 'tensorrt': unknown engine" in capsys.readouterr().err
    assert main(["--engine", "onnxruntime", "--detector-size", "99999968", *args]) == 2
    assert (
        "error: --detector-size 99999968: must be a multiple of 32 from 32 to 4096" in capsys.readouterr().err
    )
    assert main(["--engine", "onnxruntime", *args]) == 2  # no weights there
    assert "--dir selects the directory" in capsys.readouterr().err
