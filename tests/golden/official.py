"""Run parts of the official AlphaPose code (commit c60106d) on the CPU, for recording golden fixtures.

The official package is also called ``alphapose``, so it cannot share a process with ours. A gen module
therefore works in two halves: the parent half (``generate``) runs our own code (the synthetic weights
writer, the inputs) and writes files into a work directory; :func:`run_official` then starts a child
process that imports the official code through :func:`setup` and calls the gen module's official half,
which reads those files and writes the official outputs back. A gen module must not import our
``alphapose`` at module level (the child imports the gen module with the official package in its place).

The official repository ships compiled extensions that are not built here; :func:`setup` puts CPU
stand-ins for them in ``sys.modules`` before anything imports them, each one written from the official
C++/CUDA source (file and lines cited):

* ``detector/nms/nms_cpu`` -> :func:`nms_cpu` (greedy NMS with ``+1`` areas, suppress on ``IoU >= t``,
  float32 arithmetic, kept indices in index order: detector/nms/src/nms_cpu.cpp);
* ``alphapose/models/layers/dcn/deform_conv_cuda`` -> :func:`deform_conv_cpu`, installed as
  ``deform_conv`` of the official DCN module (the official op raises ``NotImplementedError`` on a CPU
  tensor); sampling, bounds and offset layout from deform_conv_cuda_kernel.cu (see the function);
* ``roi_align_cuda``, ``deform_pool_cuda``, ``nms_cuda``, ``soft_nms_cpu``: empty modules; the code
  paths that use them (RoIAlign crops, deformable pooling, GPU NMS, soft NMS) are not run.

Two more interventions, neither touching a computed value: ``matplotlib`` (imported by the YOLO files
for drawing only) is an empty module, and ``torchvision.models.resnet*`` ignore ``pretrained=True`` (the
official pose networks download ImageNet weights in their constructors; the checkpoint loaded strictly
afterwards replaces every one of them). ``easydict`` is the one package the official code needs beyond
ours: install it with ``pip install --target DIR easydict`` and pass ``--deps DIR``.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

OFFICIAL_COMMIT = "c60106d"
REPO_ROOT = Path(__file__).resolve().parents[2]


def run_official(official: Path, target: str, workdir: Path) -> None:
    """Call ``target`` ("package.module:function", taking ``(official, workdir)``) in a child process
    that imports the official code instead of ours; it inherits ``PYTHONPATH`` (make_golden.py puts
    ``--deps`` there). Raises when the child fails."""
    command = [sys.executable, "-m", "tests.golden.official", str(official), target, str(workdir)]
    subprocess.run(command, cwd=REPO_ROOT, check=True)


def setup(official: Path) -> None:
    """Make ``import alphapose`` / ``import detector`` load the official checkout, with the CPU stubs."""
    official = official.resolve()
    if not (official / "alphapose" / "utils" / "pPose_nms.py").is_file():
        raise SystemExit(f"{official} is not an AlphaPose checkout (alphapose/utils/pPose_nms.py missing)")
    try:
        importlib.import_module("easydict")
    except ImportError:
        raise SystemExit(
            "the official code needs easydict: pip install --target DIR easydict; --deps DIR"
        ) from None
    for name in [m for m in sys.modules if m == "alphapose" or m.startswith("alphapose.")]:
        del sys.modules[name]  # ours, if anything imported it: the official package takes its place
    sys.path.insert(0, str(official))
    sys.path.insert(1, str(official / "detector"))  # yolo_api imports its siblings as top-level modules

    def stub(name: str, **attributes: object) -> None:
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module

    stub("matplotlib")
    stub("matplotlib.pyplot")
    stub("detector.nms.nms_cpu", nms=nms_cpu)
    stub("detector.nms.nms_cuda")
    stub("detector.nms.soft_nms_cpu", soft_nms_cpu=None)
    stub("alphapose.utils.roi_align.roi_align_cuda")
    stub("alphapose.models.layers.dcn.deform_conv_cuda")
    stub("alphapose.models.layers.dcn.deform_pool_cuda")

    import torchvision.models

    for depth in (18, 34, 50, 101, 152):
        builder = getattr(torchvision.models, f"resnet{depth}")
        setattr(torchvision.models, f"resnet{depth}", _without_pretrained(builder))

    deform = importlib.import_module("alphapose.models.layers.dcn.deform_conv")
    deform.deform_conv = deform_conv_cpu


def _without_pretrained(builder):
    def build(pretrained: bool = False, **kwargs):
        return builder(weights=None, **kwargs)

    return build


def nms_cpu(dets: torch.Tensor, threshold: float) -> torch.Tensor:
    """detector/nms/src/nms_cpu.cpp on the CPU in float32: order by score (descending), areas
    ``(x2 - x1 + 1) * (y2 - y1 + 1)``, suppress a later box when ``inter / (a_i + a_j - inter) >= t``,
    return the surviving indices in ascending index order. The C++ sort is not stable; this one is,
    which only matters for tied scores (the fixtures have none)."""
    boxes = dets[:, :4].detach().cpu().numpy().astype(np.float32)
    scores = dets[:, 4].detach().cpu().numpy()
    x1, y1, x2, y2 = boxes.T
    one = np.float32(1)
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    limit = np.float32(threshold)
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        for j in order[position + 1 :]:
            if suppressed[j]:
                continue
            w = max(np.float32(0), min(x2[i], x2[j]) - max(x1[i], x1[j]) + one)
            h = max(np.float32(0), min(y2[i], y2[j]) - max(y1[i], y1[j]) + one)
            inter = np.float32(w * h)
            if np.float32(inter / np.float32(areas[i] + areas[j] - inter)) >= limit:
                suppressed[j] = True
    return torch.from_numpy(np.flatnonzero(~suppressed)).long()


def deform_conv_cpu(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deformable_groups: int = 1,
    im2col_step: int = 64,
) -> torch.Tensor:
    """The official DCN v1 forward, written from alphapose/models/layers/dcn/src/deform_conv_cuda_kernel.cu.

    ``deformable_im2col_gpu_kernel`` (lines 190-242): output position (h_col, w_col) of kernel tap (i, j)
    samples the input at ``h = h_col * stride - pad + i * dilation + offset[2 * (i * kw + j)]`` and
    ``w = ... + offset[2 * (i * kw + j) + 1]`` (offset channels: y then x per tap, taps row-major, one block
    of ``2 * kh * kw`` channels per deformable group); a sample counts only when ``-1 < h < H`` and
    ``-1 < w < W`` (line 228). ``deformable_im2col_bilinear`` (lines 84-114): bilinear weights from
    ``floor``, each of the four neighbours read only when it lies inside the map, else 0. The columns are
    then multiplied with the weight (the GEMM in deform_conv_cuda.cpp); only the summation order differs.
    """
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    n, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h = (height + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (width + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    per_group = channels // deformable_groups
    offsets = offset.reshape(n, deformable_groups, kh * kw, 2, out_h, out_w)
    planes = x.reshape(n, deformable_groups, per_group, height * width)
    base_h = (torch.arange(out_h, dtype=x.dtype) * sh - ph)[:, None]
    base_w = (torch.arange(out_w, dtype=x.dtype) * sw - pw)[None, :]
    columns = []
    for i in range(kh):
        for j in range(kw):
            tap = i * kw + j
            h = base_h + i * dh + offsets[:, :, tap, 0]  # (n, groups, out_h, out_w)
            w = base_w + j * dw + offsets[:, :, tap, 1]
            inside = (h > -1) & (w > -1) & (h < height) & (w < width)
            h_low, w_low = torch.floor(h), torch.floor(w)
            lh, lw = h - h_low, w - w_low
            hh, hw = 1 - lh, 1 - lw
            value = torch.zeros(n, deformable_groups, per_group, out_h * out_w, dtype=x.dtype)
            for dy, dx, weight_yx in ((0, 0, hh * hw), (0, 1, hh * lw), (1, 0, lh * hw), (1, 1, lh * lw)):
                yy, xx = h_low + dy, w_low + dx
                valid = inside & (yy >= 0) & (yy <= height - 1) & (xx >= 0) & (xx <= width - 1)
                index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)).long()
                index = index.reshape(n, deformable_groups, 1, -1).expand(-1, -1, per_group, -1)
                sample = torch.gather(planes, 3, index)
                value += sample * (weight_yx * valid).reshape(n, deformable_groups, 1, -1)
            columns.append(value.reshape(n, channels, out_h * out_w))
    cols = torch.stack(columns, dim=2)  # (n, channels, taps, positions)
    grouped = cols.reshape(n, groups, channels // groups, kh * kw, -1)
    kernels = weight.reshape(groups, out_channels // groups, channels // groups, kh * kw)
    out = torch.einsum("ngckp,gock->ngop", grouped, kernels)
    return out.reshape(n, out_channels, out_h, out_w)


def main() -> None:
    parser = argparse.ArgumentParser(description="child process of run_official (not for direct use)")
    parser.add_argument("official", type=Path)
    parser.add_argument("target", help="package.module:function")
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args()
    setup(args.official)
    module_name, function_name = args.target.split(":")
    getattr(importlib.import_module(module_name), function_name)(args.official.resolve(), args.workdir)


if __name__ == "__main__":
    main()
