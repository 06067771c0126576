"""Our PyTorch networks exported once to ONNX and cached beside the weights they were loaded from.

The export is of the module as the pipeline runs it (strictly loaded, batch norms folded, float32), so it
needs no weights of its own: the official checkpoints stay the only files a user fetches. A cached export
is valid for exactly one weights file and one set of versions: its name carries a digest of the weights
file's sha256, the PyTorch, runtime and library versions, the network's class, its input shape and the
ONNX opset, so a changed file or an upgrade exports again instead of running a stale graph. The cache lives
in ``onnx/`` next to the weights (the function images fill it while they are built); where that directory
cannot be written, the export is made in a temporary directory, compiled and removed, and the note says
so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alphapose import __version__
from alphapose.models.resnet import DeformConv2d
from alphapose.weights import sha256_of

OPSET = 17  # what both runtimes read; networks with deformable convolutions need 19 (ONNX DeformConv)
DEFORM_OPSET = 19
CACHE_DIRECTORY = "onnx"
INPUT_NAME, OUTPUT_NAME = "input", "output"


def opset_for(model: nn.Module) -> int:
    return DEFORM_OPSET if any(isinstance(m, DeformConv2d) for m in model.modules()) else OPSET


def cache_key(
    weights_sha256: str,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    runtime: str,
    runtime_version: str,
) -> str:
    """The digest that names an export: what it was made from and what will read it."""
    fields = {
        "weights_sha256": weights_sha256,
        "network": f"{type(model).__module__}.{type(model).__qualname__}",
        "input_shape": list(input_shape),
        "opset": opset_for(model),
        "torch": torch.__version__,
        "runtime": f"{runtime} {runtime_version}",
        "alphapose": __version__,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cache_path(weights: Path, key: str) -> Path:
    return weights.parent / CACHE_DIRECTORY / f"{weights.stem}-{key[:16]}.onnx"


@contextlib.contextmanager
def exported(
    model: nn.Module, weights: Path, input_shape: tuple[int, int, int], runtime: str, runtime_version: str
) -> Iterator[tuple[Path, str]]:
    """The cached export of ``model`` (made now if missing) and a note saying which it was, for the block.

    Where the cache cannot be written, the export is made in a temporary directory that is removed when
    the block ends: compile it inside the block (both runtimes compile into memory).
    """
    key = cache_key(sha256_of(weights), model, input_shape, runtime, runtime_version)
    path = cache_path(weights, key)
    if path.is_file():
        yield path, f"cached export {path}"
        return
    if writable(path.parent):
        seconds = _timed_export(model, input_shape, path)
        yield path, f"exported to {path} in {seconds:.1f} s"
        return
    with tempfile.TemporaryDirectory(prefix="alphapose-onnx-") as directory:
        target = Path(directory) / path.name
        seconds = _timed_export(model, input_shape, target)
        yield (
            target,
            (
                f"{path.parent} is not writable: exported for this process in {seconds:.1f} s "
                "(each start exports again)"
            ),
        )


def _timed_export(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> float:
    start = time.perf_counter()
    export_onnx(model, input_shape, path)
    return time.perf_counter() - start


def writable(directory: Path) -> bool:
    """Whether exports can be cached in ``directory`` (made here when missing)."""
    try:
        directory.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> Path:
    """Write ``model``'s ONNX graph (batch dimension dynamic) to ``path``, atomically."""
    example = torch.zeros((1, *input_shape))
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with _deform_conv_symbolic(), warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # the TorchScript exporter warns about its own deprecation and about traced shape arithmetic
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(partial),
                dynamo=False,
                opset_version=opset_for(model),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _deform_conv(g: Any, *args: Any) -> Any:
    """torchvision's ``deform_conv2d`` as ONNX ``DeformConv`` (opset 19): same offset layout, same
    zero-outside bilinear sampling; the mask is passed only when the layer is modulated."""
    from torch.onnx import symbolic_helper

    input, weight, offset, mask, bias, *numbers, use_mask = args
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups = numbers

    def const(value: object) -> int:
        return int(symbolic_helper._maybe_get_const(value, "i"))

    inputs = [input, weight, offset, bias] + (
        [mask] if symbolic_helper._maybe_get_const(use_mask, "b") else []
    )
    return g.op(
        "DeformConv",
        *inputs,
        strides_i=[const(stride_h), const(stride_w)],
        pads_i=[const(pad_h), const(pad_w), const(pad_h), const(pad_w)],
        dilations_i=[const(dil_h), const(dil_w)],
        group_i=const(groups),
        offset_group_i=const(offset_groups),
    )


@contextlib.contextmanager
def _deform_conv_symbolic() -> Iterator[None]:
    """The ``DeformConv`` mapping registered for one export only (the exporter's table is process-wide)."""
    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv, DEFORM_OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("torchvision::deform_conv2d", DEFORM_OPSET)
