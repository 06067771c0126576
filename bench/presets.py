"""Every pose preset's network side by side: time per person and FLOPs, as the pipeline runs them.

Each preset gets synthetic official-format weights, loaded by ``load_pose_model`` with folded batch norms
and channels-last weights (what :meth:`PosePipeline.from_weights_dir` does), and one forward of a batch
of crops is timed, the presets in turns: the pipeline's CPU forward batch on a CPU, the largest GPU batch
of the throughput table on CUDA. The detector is the same for every preset and is not part of these
figures.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alphapose.pipeline import CPU_FORWARD_BATCH
from alphapose.pose.presets import PRESETS
from alphapose.weights.load import load_pose_model
from bench.measure import count_flops, measure_interleaved
from bench.speedups import GPU_BATCHES
from bench.stages import Plan, autocast
from tools.synthetic_weights import synthetic_pose_model

SEED = 0


def _forward(model: nn.Module, crops: torch.Tensor, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(), autocast(device):
        return model(crops).float().cpu()


def load_network(name: str, directory: Path, device: torch.device) -> nn.Module:
    """The preset's network on synthetic weights, as the pipeline loads it: folded, channels-last."""
    preset = PRESETS[name]
    path = directory / preset.checkpoint.name
    torch.save(synthetic_pose_model(name, torch.Generator().manual_seed(SEED)).state_dict(), path)
    model = load_pose_model(preset, path, device, fold_batch_norm=True)
    path.unlink()
    return model.to(memory_format=torch.channels_last)


def preset_speeds(device: torch.device, plan: Plan, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """One row per preset: GFLOP per person, ms per batch and per person, persons per second.

    The presets are timed in turns, so a slow spell of a shared machine hits each of them alike.
    """
    batch = CPU_FORWARD_BATCH if device.type == "cpu" else max(GPU_BATCHES)
    works, flops = {}, {}
    with tempfile.TemporaryDirectory(prefix="alphapose-bench-presets-") as directory:
        for name, preset in PRESETS.items():
            log(f"loading the pose network of preset {name}")
            model = load_network(name, Path(directory), device)
            height, width = preset.input_size
            crops = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(SEED)) - 0.45
            crops = crops.to(device).contiguous(memory_format=torch.channels_last)
            flops[name] = count_flops(model, crops[:1])
            works[name] = partial(_forward, model, crops, device)
    log("timing the pose network of every preset, in turns")
    timings = measure_interleaved(works, plan.repeats, plan.warmup, device)
    return [
        {
            "preset": name,
            "batch": batch,
            "gflop_per_person": round(flops[name] / 1e9, 3),
            "ms_per_batch": round(timing.median_ms, 3),
            "ms_per_person": round(timing.median_ms / batch, 3),
            "persons_per_s": round(batch / timing.median_ms * 1000, 2),
            "uncounted": "deformable convolutions" if "dcn" in name else None,
            "timing": timing.as_dict(),
        }
        for name, timing in timings.items()
    ]
