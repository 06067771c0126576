"""The precision policy: names, resolution per device, the CPU-units check, and converted networks."""

from __future__ import annotations

import copy
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from alphapose.cvat.errors import ConfigError
from alphapose.cvat.settings import Config
from alphapose.engines.fuse import fold_batch_norms
from alphapose.engines.precision import (
    CPU_UNIT_FLAGS,
    Precision,
    convert_model,
    cpu_flags,
    missing_cpu_units,
    parse_precision,
    require_cpu_units,
    resolve_precision,
)
from alphapose.errors import OptionError, PrecisionError, WeightsError
from alphapose.options import PipelineOptions
from alphapose.pipeline import PosePipeline
from alphapose.pose.models.resnet import Bottleneck
from alphapose.structures import Pose
from tools.synthetic_images import person_boxes, synthetic_photo


@pytest.mark.parametrize("value", ["auto", "fp32", "bf16", "fp16", " BF16 "])
def test_parse_accepts_the_names(value: str) -> None:
    assert parse_precision(value) == value.strip().lower()


@pytest.mark.parametrize("value", ["", "float32", "bfloat16", "half", "int4"])
def test_parse_refuses_anything_else_listing_the_choices(value: str) -> None:
    with pytest.raises(PrecisionError, match="expected one of auto, fp32, bf16, fp16, int8"):
        parse_precision(value)


@pytest.mark.parametrize(
    ("requested", "device", "name", "mode"),
    [
        ("auto", "cpu", "fp32", "fp32"),
        ("auto", "cuda", "fp16", "autocast"),
        ("fp32", "cpu", "fp32", "fp32"),
        ("fp32", "cuda", "fp32", "fp32"),
        ("bf16", "cpu", "bf16", "converted"),
        ("bf16", "cuda", "bf16", "autocast"),
        ("fp16", "cpu", "fp16", "converted"),
        ("fp16", "cuda:1", "fp16", "autocast"),
    ],
)
def test_resolution_per_device(requested: str, device: str, name: str, mode: str) -> None:
    precision = resolve_precision(requested, device)
    assert (precision.name, precision.mode) == (name, mode)


def test_fp32_leaves_the_network_and_the_forward_untouched() -> None:
    precision = resolve_precision("fp32", "cpu")
    model = nn.Conv2d(3, 4, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert precision.prepare(model) is model
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with precision.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_cuda_precisions_run_under_autocast() -> None:
    precision = resolve_precision("bf16", "cuda")
    model = nn.Linear(2, 2)
    assert precision.prepare(model) is model and model.weight.dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": only the context's settings matter here
        context = precision.autocast()
    assert isinstance(context, torch.autocast)
    assert (context.device, context.fast_dtype) == ("cuda", torch.bfloat16)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("flags", [{"avx512_bf16"}, {"amx_bf16", "amx_tile"}])
def test_bf16_is_accepted_with_either_unit(flags: set[str]) -> None:
    require_cpu_units(resolve_precision("bf16", "cpu"), flags)


def test_bf16_without_the_units_is_refused_naming_the_flags() -> None:
    precision = resolve_precision("bf16", "cpu")
    with pytest.raises(PrecisionError) as error:
        require_cpu_units(precision, {"avx2", "avx512f", "avx512_fp16"})
    message = str(error.value)
    assert "amx_bf16 or avx512_bf16" in message
    assert "use fp32 (or auto)" in message
    assert error.value.option == "precision"


def test_fp16_on_the_cpu_needs_its_own_units() -> None:
    precision = resolve_precision("fp16", "cpu")
    assert "amx_fp16 or avx512_fp16" in missing_cpu_units(precision, {"avx512_bf16", "amx_bf16"})
    assert missing_cpu_units(precision, {"avx512_fp16"}) is None
    assert CPU_UNIT_FLAGS["fp16"] == ("amx_fp16", "avx512_fp16")


@pytest.mark.parametrize(("requested", "device"), [("fp32", "cpu"), ("auto", "cpu"), ("bf16", "cuda")])
def test_no_units_needed_for_fp32_or_on_a_gpu(requested: str, device: str) -> None:
    assert missing_cpu_units(resolve_precision(requested, device), set()) is None


class _Decoder(nn.Module):
    """Stands for a detector's box decoding: must see and return float32."""

    decodes_in_float32 = True

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1000.0 + 1 / 3))
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.dtype)
        return x * self.scale


class _Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 4, 1)
        self.decode = _Decoder()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = self.head(self.features(x))
        return self.decode(raw), {"raw": raw, "count": torch.tensor(3)}


def _folded_channels_last(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    fold_batch_norms(model)
    return model.to(memory_format=torch.channels_last)


def test_converted_network_computes_in_bf16_and_returns_float32() -> None:
    model = _folded_channels_last(_Detector())
    inputs = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        expected = model(inputs)
    convert_model(model, torch.bfloat16)
    conv = model.features[0]
    assert conv.weight.dtype == torch.bfloat16 and conv.bias.dtype == torch.bfloat16
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert isinstance(model.features[1], nn.Identity)  # the fold survives
    with torch.inference_mode():
        decoded, extra = model(inputs)
    assert decoded.dtype == torch.float32 and extra["raw"].dtype == torch.float32
    assert extra["count"].dtype == torch.int64
    # the decoder kept its float32 parameter and got float32 input
    assert model.decode.scale.dtype == torch.float32 and model.decode.seen[-1] == torch.float32
    torch.testing.assert_close(decoded, expected[0], rtol=0.05, atol=0.05 * 1000)


def test_deformable_convolutions_stay_float32_inside_a_bf16_network() -> None:
    block = Bottleneck(64, 16, deformable=True)
    model = _folded_channels_last(nn.Sequential(block))
    inputs = torch.rand(1, 64, 8, 6)
    with torch.inference_mode():
        expected = model(inputs)
    convert_model(model, torch.bfloat16)
    assert block.conv2.weight.dtype == torch.float32
    assert block.conv3.weight.dtype == torch.bfloat16
    with torch.inference_mode():
        actual = model(inputs)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=0.05, atol=0.05)


def test_conversion_refuses_fp32_and_a_second_conversion() -> None:
    model = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        convert_model(model, torch.float32)
    convert_model(model, torch.bfloat16)
    with pytest.raises(ValueError, match="already converted"):
        convert_model(model, torch.float16)


@pytest.fixture(scope="module")
def fp32_pipeline(weights_dir: Path) -> PosePipeline:
    return PosePipeline.from_weights_dir(weights_dir, device="cpu", detector_size=160)


# Bounds from the measurement on the synthetic weights (bench/README.md, "bf16 next to fp32, and their
# agreement"): bf16 lies inside them, a broken bf16 path (weights rounded to 8 bits) far outside; random
# networks amplify rounding, hence the loose keypoint bound.
HEATMAP_BOUND = 0.8
KEYPOINT_MEDIAN_BOUND_PX = 80.0


def assert_agrees_as_bf16_does(fp32_pipeline: PosePipeline, reduced: PosePipeline) -> None:
    result = agreement(fp32_pipeline, reduced, (640, 480), persons=5, heatmap_crops=4)
    kept = result["persons_kept"]
    assert kept["fp32"] == kept["bf16"] == kept["matched"] == 6
    assert result["box_px_max"] <= 1.0
    assert result["heatmap_relative_difference"] <= HEATMAP_BOUND
    assert result["keypoint_px_median"] <= KEYPOINT_MEDIAN_BOUND_PX


def with_precision(pipeline: PosePipeline, precision: Precision) -> PosePipeline:
    """A copy of ``pipeline`` (float32 weights) whose two networks run in ``precision``."""
    other = copy.copy(pipeline)
    other.detector = copy.copy(pipeline.detector)
    other.detector.model = precision.prepare(copy.deepcopy(pipeline.detector.model))
    other.pose_model = precision.prepare(copy.deepcopy(pipeline.pose_model))
    other.precision = precision
    return other


def agreement(
    fp32: PosePipeline, reduced: PosePipeline, size: tuple[int, int], persons: int, heatmap_crops: int
) -> dict[str, Any]:
    """How far ``reduced`` moves boxes and keypoints from ``fp32``: whole-pipeline runs on a synthetic
    photo, and the pose stage on ``persons`` fixed boxes, each person matched with the other pipeline's
    person of nearest box; and the heatmaps' rms difference over their spread (0 is exact, about 1.4 is
    unrelated)."""
    image = synthetic_photo(*size)
    boxes, scores = person_boxes(*size, persons, seed=persons)
    runs = [
        (fp32(image), reduced(image)),
        (fp32.estimate(image, boxes, scores), reduced.estimate(image, boxes, scores)),
    ]
    box_px: list[float] = []
    keypoint_px: list[np.ndarray] = []
    kept = {"fp32": 0, reduced.precision.name: 0, "matched": 0}
    for index, (expected, actual) in enumerate(runs):
        kept["fp32"] += len(expected)
        kept[reduced.precision.name] += len(actual)
        for pose, other in _matches(expected, actual):
            kept["matched"] += 1
            if index == 0:
                box_px.append(float(np.abs(pose.box - other.box).max()))
            keypoint_px.append(np.linalg.norm(pose.keypoints - other.keypoints, axis=1))
    batch = fp32.crops(image, person_boxes(*size, heatmap_crops)[0])[0]
    expected = fp32.heatmaps(batch).flatten(2)
    rms = (reduced.heatmaps(batch).flatten(2) - expected).pow(2).mean(-1).sqrt()
    return {
        "persons_kept": kept,
        "box_px_max": max(box_px, default=0.0),
        "keypoint_px_median": float(np.median(np.concatenate(keypoint_px))),
        "heatmap_relative_difference": float((rms / expected.std(-1)).median()),
    }


def _matches(expected: list[Pose], actual: list[Pose]) -> list[tuple[Pose, Pose]]:
    """Each expected person with the actual person whose box is nearest (largest coordinate difference)."""
    if not actual:
        return []
    return [
        (pose, min(actual, key=lambda other: float(np.abs(pose.box - other.box).max()))) for pose in expected
    ]


@pytest.mark.slow
def test_bf16_agrees_with_fp32_on_the_synthetic_weights(fp32_pipeline: PosePipeline) -> None:
    reduced = with_precision(fp32_pipeline, resolve_precision("bf16", "cpu"))
    assert reduced.pose_model.conv_out.weight.dtype == torch.bfloat16
    assert fp32_pipeline.pose_model.conv_out.weight.dtype == torch.float32
    assert_agrees_as_bf16_does(fp32_pipeline, reduced)


@pytest.mark.slow  # exports and compiles both networks
def test_openvino_in_bf16_agrees_with_fp32_as_pytorch_in_bf16_does(
    linked_weights_dir: Path, fp32_pipeline: PosePipeline
) -> None:
    """The fast CPU setting the README names (``openvino`` with ``bf16``), end to end against fp32
    PyTorch, within the bounds of PyTorch's own bf16. Where the plugin cannot run bf16 (a CPU without
    the units, or oneDNN capped below them) the build is refused instead, as the engine's check says."""
    from alphapose.engines import openvino_engine

    build = partial(
        PosePipeline.from_weights_dir, linked_weights_dir, device="cpu", detector_size=160, precision="bf16"
    )
    refusal = openvino_engine.check_precision(resolve_precision("bf16", "cpu"))
    if refusal is not None:  # no bf16 units, or oneDNN capped below them (make test-isa)
        with pytest.raises(OptionError, match=re.escape(refusal)):
            build(engine="openvino")
        return
    reduced = build(engine="openvino")
    assert all(e.engine == "openvino" and "bf16" in e.description for e in reduced.engines.values())
    assert_agrees_as_bf16_does(fp32_pipeline, reduced)


# --- the settings: library option, the function's variable, the start-up check -----------------------


def test_the_option_refuses_an_unknown_precision() -> None:
    with pytest.raises(OptionError, match="precision='half': expected one of auto, fp32, bf16, fp16"):
        PipelineOptions(precision="half")
    assert PipelineOptions().precision == "auto"


def test_the_function_reads_alphapose_precision() -> None:
    assert Config.from_env({"ALPHAPOSE_PRECISION": " BF16 "}).options.precision == "bf16"
    assert Config.from_env({}).options.precision == "auto"
    with pytest.raises(ConfigError, match="ALPHAPOSE_PRECISION='double': expected one of"):
        Config.from_env({"ALPHAPOSE_PRECISION": "double"})


def test_the_function_refuses_bf16_on_a_cpu_without_the_units(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The library's refusal (before any file is looked for) names the variable the user set."""
    monkeypatch.setattr("alphapose.engines.precision.cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    env = {"ALPHAPOSE_PRECISION": "bf16", "ALPHAPOSE_DEVICE": "cpu", "ALPHAPOSE_WEIGHTS_DIR": str(tmp_path)}
    with pytest.raises(ConfigError) as error:
        Config.from_env(env).load_pipeline()
    assert "ALPHAPOSE_PRECISION='bf16'" in str(error.value)
    assert "amx_bf16 or avx512_bf16" in str(error.value)
    with pytest.raises(WeightsError, match="missing weights"):  # fp32 passes, on to the files
        Config.from_env({**env, "ALPHAPOSE_PRECISION": "fp32"}).load_pipeline()
    monkeypatch.setattr("alphapose.engines.precision.cpu_flags", lambda: frozenset({"amx_bf16"}))
    with pytest.raises(WeightsError, match="missing weights"):  # bf16 passes with the units
        Config.from_env(env).load_pipeline()


def test_the_library_refuses_a_precision_the_cpu_has_no_units_for_before_loading_anything(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("alphapose.engines.precision.cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    for name, units in (("bf16", "amx_bf16 or avx512_bf16"), ("fp16", "amx_fp16 or avx512_fp16")):
        with pytest.raises(OptionError, match=units) as caught:  # the directory is empty: not looked at
            PosePipeline.from_weights_dir(tmp_path, device="cpu", precision=name)
        assert (caught.value.option, caught.value.value) == ("precision", name)
    monkeypatch.setattr("alphapose.engines.precision.cpu_flags", lambda: frozenset())
    with pytest.raises(OptionError, match="lists no flags here"):
        PosePipeline.from_weights_dir(tmp_path, device="cpu", precision="bf16")
    with pytest.raises(WeightsError, match="missing weights"):  # fp32 needs no units: the files are next
        PosePipeline.from_weights_dir(tmp_path, device="cpu", precision="fp32")


def test_the_library_builds_bf16_on_a_cpu_with_the_units(
    weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("alphapose.engines.precision.cpu_flags", lambda: frozenset({"avx512_bf16"}))
    pipeline = PosePipeline.from_weights_dir(weights_dir, device="cpu", detector_size=160, precision="bf16")
    assert pipeline.precision.describe() == "bf16 weights"
    assert pipeline.pose_model.conv_out.weight.dtype == torch.bfloat16
    assert pipeline.pose_model.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    detector_weights = {p.dtype for p in pipeline.detector.model.parameters()}
    assert detector_weights == {torch.bfloat16}
    image = np.full((120, 90, 3), 100, dtype=np.uint8)
    (pose,) = pipeline(image)  # the synthetic detector finds one person covering the image
    assert pose.keypoints.dtype == np.float32 and pose.box.dtype == np.float32
    np.testing.assert_array_equal(pose.box, [0, 0, 90, 120])


def test_the_function_refuses_before_loading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_handler import ModelHandler

    monkeypatch.setattr("alphapose.engines.precision.cpu_flags", lambda: frozenset({"avx512f"}))
    environ = {
        "ALPHAPOSE_PRECISION": "bf16",
        "ALPHAPOSE_DEVICE": "cpu",
        "ALPHAPOSE_WEIGHTS_DIR": str(tmp_path),
    }
    with pytest.raises(ConfigError, match=r"ALPHAPOSE_PRECISION='bf16': bf16 on the CPU needs amx_bf16 or"):
        ModelHandler(Config.from_env(environ))  # the directory is empty: the weights were not looked at
