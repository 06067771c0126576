"""The code paths a GPU takes, run on the CPU and checked against the CPU paths.

A CUDA pipeline crops with one batched ``grid_sample`` on the uploaded image, runs under fp16 autocast,
and converts the detector's uint8 input on the device through a table. The same code runs here: the
pipeline's switches turn the batched crops and autocast (bf16, the CPU's autocast type) on for the CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from alphapose.detection.yolov3 import _unit_table, letterbox, network_input
from alphapose.engines.precision import Precision
from alphapose.pipeline import PosePipeline
from alphapose.pose.presets import get_preset
from alphapose.pose.transforms import crop_persons
from tests.golden.gen_pose_stage import BOXES, PHOTO

PRESET = get_preset("fastpose_res50_coco")


def tiny_pose_model() -> nn.Module:
    """(N, 3, 256, 192) -> (N, 17, 64, 48) with weights that make bf16 rounding visible."""
    torch.manual_seed(0)
    return nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(3, 17, 3, padding=1), nn.ReLU()).eval()


def pipeline(device: str = "cpu", model: nn.Module | None = None) -> PosePipeline:
    # the pose stage never touches the detector
    return PosePipeline(None, model or tiny_pose_model(), PRESET, torch.device(device))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def test_the_device_chooses_the_paths() -> None:
    """A CUDA pipeline (built without touching the GPU) crops batched and autocasts to fp16; a CPU one not."""
    cuda, cpu = pipeline("cuda"), pipeline("cpu")
    assert (cuda.batched_crops, cuda.precision) == (True, Precision("fp16", "autocast", "cuda"))
    assert (cpu.batched_crops, cpu.precision) == (False, Precision("fp32", "fp32", "cpu"))


def test_batched_crops_through_the_pipeline_match_the_cpu_crops(photo: np.ndarray) -> None:
    """The upload-and-warp path of a GPU pipeline: same RGB crops as OpenCV's, to one grey level."""
    gpu_path = pipeline()
    gpu_path.batched_crops = True
    batched, batched_boxes = gpu_path.crops(photo, BOXES)
    expected, expected_boxes = crop_persons(photo, BOXES, PRESET.input_size)
    np.testing.assert_array_equal(batched_boxes, expected_boxes)
    difference = (batched - expected).abs()
    assert float(difference.max()) <= 1 / 255 + 1e-6
    assert float((difference > 1e-6).float().mean()) < 2e-3


def test_autocast_plumbing_with_bf16_on_the_cpu(photo: np.ndarray) -> None:
    """Under the pipeline's autocast the network runs in the low precision and the stage gets float32."""
    model = tiny_pose_model()
    plain, autocast = pipeline(model=model), pipeline(model=model)
    autocast.precision = Precision("bf16", "autocast", "cpu")  # the CPU's stand-in for CUDA's fp16
    with autocast.precision.autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with plain.precision.autocast():
        assert not torch.is_autocast_enabled("cpu")
    batch, _ = plain.crops(photo, BOXES)
    for flip in (False, True):
        plain.flip = autocast.flip = flip
        expected, actual = plain.heatmaps(batch), autocast.heatmaps(batch)
        assert actual.dtype == torch.float32 and actual.shape == expected.shape
        assert not torch.equal(actual, expected)  # the convolution did run in bf16
        torch.testing.assert_close(actual, expected, rtol=2e-2, atol=2e-2)  # bf16 keeps 8 bits
    poses = autocast.estimate(photo, BOXES, np.linspace(0.9, 0.5, len(BOXES), dtype=np.float32))
    assert poses and all(p.keypoints.dtype == np.float32 for p in poses)


def test_the_device_side_input_table_is_the_cpu_division() -> None:
    """The detector's uint8 input becomes floats on the device through a table divided on the CPU: the
    official ``torch.from_numpy(img).float().div(255.0)`` values whatever device divides differently."""
    table = _unit_table(torch.device("cpu"))
    expected = torch.tensor([np.float32(v) / np.float32(255) for v in range(256)], dtype=torch.float32)
    assert torch.equal(table, expected)
    canvas, _ = letterbox(np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8), 64)
    assert torch.equal(network_input(canvas[None]), canvas[None].float().div(255.0))
