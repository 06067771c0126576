"""The fast paths compute what the reference paths compute: folded batch norms, channels-last weights,
batched crops, meta-device loading, and the whole optimised pipeline against the plain one."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from alphapose import PosePipeline
from alphapose.detection.darknet import YoloV3SPP, read_darknet_weights
from alphapose.detection.person_detector import FAMILIES, PersonDetector
from alphapose.engines.fuse import fold_batch_norms
from alphapose.engines.threads import _cgroup_cpu_quota, configure_cpu_threads, cpu_budget
from alphapose.pose.presets import get_preset
from alphapose.pose.transforms import crop_persons, crop_persons_batched
from alphapose.weights.load import load_detector, load_pose_model

DETECTOR_WEIGHTS = "yolov3-spp.weights"  # the official file name (alphapose/detection/detectors.py)

POSE_PRESETS = ("fastpose_res50_coco", "simplepose_res50_coco", "fastpose_dcn_res50_coco")
SMALL_CROPS = (2, 3, 128, 96)  # every pose network is fully convolutional; small inputs keep this fast


def _random_norms(model: nn.Module, seed: int) -> nn.Module:
    """Batch-norm statistics far from the identity, so folding has something to get wrong."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.3, 3.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
    return model.eval()


def _assert_same_function(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 rounding accumulated over a deep network."""
    scale = float(b.abs().max())
    assert scale > 0
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5 * scale)


def _pose_network(preset_name: str, seed: int) -> nn.Module:
    """A preset's network with reproducible random weights and batch norms far from the identity."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = get_preset(preset_name).build()
    return _random_norms(model, seed)


def _darknet(input_size: int = 64) -> YoloV3SPP:
    model = YoloV3SPP(input_size)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.mul_(0.8)
                if module.bias is not None:  # the heads: small outputs keep exp(w, h) finite
                    module.weight.uniform_(-0.01, 0.01, generator=generator)
    return _random_norms(model, seed=4)


@pytest.mark.parametrize("preset_name", POSE_PRESETS)
def test_folded_pose_network_gives_the_same_heatmaps(preset_name: str) -> None:
    model = _pose_network(preset_name, seed=1)
    if preset_name.startswith("fastpose_dcn"):
        with torch.no_grad():  # non-zero offsets, so the deformable convs really deform
            for module in model.modules():
                if getattr(module, "conv2_offset", None) is not None:
                    module.conv2_offset.weight.normal_(0, 0.01)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == norms  # every norm in these networks follows a convolution
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    crops = torch.rand(SMALL_CROPS, generator=torch.Generator().manual_seed(5)) - 0.45
    with torch.inference_mode():
        _assert_same_function(folded(crops), model(crops))


def test_folded_detector_gives_the_same_predictions() -> None:
    model = _darknet()
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == 73  # the 76 convolutions less the three bias-only heads
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        expected, actual = model(image), folded(image)
    assert expected[..., 2:4].std() > 0  # box sizes depend on the features, not only on the head biases
    _assert_same_function(actual, expected)


def test_folding_leaves_a_norm_without_a_convolution_in_front_alone() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
    )
    model = _random_norms(model, seed=7)
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == 1
    assert isinstance(folded[2], nn.BatchNorm2d) and isinstance(folded[4], nn.Identity)
    x = torch.randn(2, 3, 9, 9)
    with torch.inference_mode():
        _assert_same_function(folded(x), model(x))


def test_folding_refuses_a_network_in_training_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train())


def test_channels_last_gives_the_same_outputs() -> None:
    pose = _pose_network("fastpose_res50_coco", seed=8)
    fold_batch_norms(pose)
    detector = _darknet()
    fold_batch_norms(detector)
    crops = torch.rand(SMALL_CROPS) - 0.45
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        for model, inputs in ((pose, crops), (detector, image)):
            expected = model(inputs)
            fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
            assert next(p for p in fast.parameters() if p.dim() == 4).is_contiguous(
                memory_format=torch.channels_last
            )
            _assert_same_function(fast(inputs), expected)


def test_loaders_fold_only_when_asked_and_keep_the_file_values(weights_dir: Path) -> None:
    preset = get_preset("fastpose_res50_coco")
    plain = load_pose_model(preset, weights_dir / preset.checkpoint.name)
    folded = load_pose_model(preset, weights_dir / preset.checkpoint.name, fold_batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in folded.parameters())
    crops = torch.rand(SMALL_CROPS) - 0.45
    with torch.inference_mode():
        _assert_same_function(folded(crops), plain(crops))


def test_detector_allocated_without_initialisation_holds_exactly_the_file(weights_dir: Path) -> None:
    reference = YoloV3SPP(320)
    read_darknet_weights(reference, weights_dir / DETECTOR_WEIGHTS)
    loaded = load_detector(weights_dir / DETECTOR_WEIGHTS, input_size=320)
    expected = reference.state_dict()
    actual = loaded.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key  # num_batches_tracked included: no stray memory


def _smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3)


BOXES = np.array(
    [
        [100, 50, 300, 400],  # tall: widened to the input aspect ratio
        [-40, -30, 120, 200],  # partly outside: the zero border
        [500, 300, 700, 360],  # wide: made taller
        [10.3, 20.7, 14.9, 27.2],  # tiny: strong magnification
        [0, 0, 640, 480],  # the whole image
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("kind", ["smooth", "noise"])
def test_batched_crops_match_the_opencv_warp(kind: str) -> None:
    if kind == "smooth":
        image = _smooth_image(480, 640, seed=9)
    else:
        image = np.random.default_rng(10).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    expected, expected_boxes = crop_persons(image, BOXES, (256, 192))
    actual, actual_boxes = crop_persons_batched(torch.from_numpy(image), BOXES, (256, 192))
    np.testing.assert_array_equal(actual_boxes, expected_boxes)
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    difference = (actual - expected).abs()
    assert float(difference.max()) <= 1 / 255 + 1e-6  # at most one grey level, from rounding
    assert float((difference > 1e-6).float().mean()) < 2e-3  # and that very rarely


def test_batched_crops_keep_the_no_division_rule_for_dark_crops() -> None:
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    image[40:80, 60:100] = 1  # maximum 1: the reference leaves such crops unscaled
    boxes = np.array([[50, 30, 110, 90], [0, 0, 20, 20]], dtype=np.float32)
    expected, _ = crop_persons(image, boxes, (256, 192))
    actual, _ = crop_persons_batched(torch.from_numpy(image), boxes, (256, 192))
    assert float(expected.max()) == pytest.approx(1 - 0.406)  # a value of 1, not 1/255, minus the R mean
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_optimised_pipeline_gives_the_reference_poses(weights_dir: Path) -> None:
    fast = PosePipeline.from_weights_dir(weights_dir, device="cpu", detector_size=320)
    preset = fast.preset
    reference = PosePipeline(
        PersonDetector(load_detector(weights_dir / DETECTOR_WEIGHTS, 320), FAMILIES["yolov3"], 320),
        load_pose_model(preset, weights_dir / preset.checkpoint.name),
        preset,
        torch.device("cpu"),
    )
    assert next(fast.pose_model.parameters()).is_contiguous(memory_format=torch.channels_last)
    image = _smooth_image(360, 480, seed=11)
    expected, actual = reference(image), fast(image)
    assert len(actual) == len(expected) == 1
    np.testing.assert_allclose(actual[0].box, expected[0].box, atol=1e-3)
    assert actual[0].box_score == pytest.approx(expected[0].box_score, abs=1e-5)
    np.testing.assert_allclose(actual[0].keypoints, expected[0].keypoints, atol=1e-2)
    boxes = np.array([[20, 30, 140, 330], [200, 40, 330, 300], [300, 100, 470, 350]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    expected, actual = reference.estimate(image, boxes, scores), fast.estimate(image, boxes, scores)
    assert len(actual) == len(expected) >= 2
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-2)
        np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, atol=1e-4)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota_is_read_from_v2_and_v1_files(
    tmp_path: Path, files: dict[str, str], expected: float
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cgroup_cpu_quota(tmp_path) == expected


def test_thread_cap_lowers_torch_threads_unless_omp_num_threads_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(cpu_budget() + 3)
        assert configure_cpu_threads() == cpu_budget()
        monkeypatch.setenv("OMP_NUM_THREADS", str(cpu_budget() + 3))
        torch.set_num_threads(cpu_budget() + 3)
        assert configure_cpu_threads() == cpu_budget() + 3
    finally:
        torch.set_num_threads(before)
