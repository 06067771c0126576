"""Our PyTorch networks exported once to ONNX and cached beside the weights they were loaded from.

The export is of the module as the pipeline runs it (strictly loaded, batch norms folded, float32), so it
needs no weights of its own: the official checkpoints stay the only files a user fetches. A cached export
is valid for exactly one weights file and one set of versions: its name carries a digest of the weights
file's sha256, the PyTorch, runtime and library versions, the network's class, its input shape and the
ONNX opset, so a changed file or an upgrade exports again instead of running a stale graph. The cache lives
in ``onnx/`` next to the weights (the function images fill it while they are built); where that directory
cannot be written, the export is made in a temporary directory, compiled and removed, and the note says
so.

An int8 model (:func:`quantized`) is cached in the same place under a key made of the export's key, the
calibration set's digest and the quantizer's version and settings; its key fields are written beside it
(``.json``), and a cached model whose fields differ from the ones asked for (a copied or renamed file, a
digest prefix shared by chance) is refused rather than run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alphapose import __version__
from alphapose.errors import WeightsError
from alphapose.pose.models.resnet import DeformConv2d
from alphapose.weights.files import sha256_of

OPSET = 17  # what both runtimes read; networks with deformable convolutions need 19 (ONNX DeformConv)
DEFORM_OPSET = 19
CACHE_DIRECTORY = "onnx"
INPUT_NAME, OUTPUT_NAME = "input", "output"


def opset_for(model: nn.Module) -> int:
    return DEFORM_OPSET if any(isinstance(m, DeformConv2d) for m in model.modules()) else OPSET


class CacheError(WeightsError):
    """A cached model beside the weights that does not belong to the key it is stored under; the message
    names the file and says to remove it."""


def cache_key(
    weights_sha256: str,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    runtime: str,
    runtime_version: str,
) -> str:
    """The digest that names an export: what it was made from and what will read it."""
    return digest(export_fields(weights_sha256, model, input_shape, runtime, runtime_version))


def export_fields(
    weights_sha256: str,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    runtime: str,
    runtime_version: str,
) -> dict[str, Any]:
    """What an export is made from and what will read it: the fields of its key."""
    return {
        "weights_sha256": weights_sha256,
        "network": f"{type(model).__module__}.{type(model).__qualname__}",
        "input_shape": list(input_shape),
        "opset": opset_for(model),
        "torch": torch.__version__,
        "runtime": f"{runtime} {runtime_version}",
        "alphapose": __version__,
    }


def digest(fields: Mapping[str, Any]) -> str:
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


# Quantizes an ONNX export into an int8 model written at the given path (``.xml``, with its ``.bin``).
Quantize = Callable[[Path, Path], None]


def quantized_path(weights: Path, key: str) -> Path:
    return weights.parent / CACHE_DIRECTORY / f"{weights.stem}-{key[:16]}-int8.xml"


@contextlib.contextmanager
def quantized(
    model: nn.Module,
    weights: Path,
    input_shape: tuple[int, int, int],
    runtime: str,
    runtime_version: str,
    quantizer: Mapping[str, Any],
    quantize: Quantize,
) -> Iterator[tuple[Path, str]]:
    """The cached int8 model of ``model`` (quantized now if missing: exported, then ``quantize``) and a note.

    ``quantizer`` holds what else decides the result (the calibration set's digest, the quantizer's
    version and settings); with the export's fields it makes the key. A cached model whose recorded
    fields differ is a :class:`CacheError`. Where the cache cannot be written, both files are made in a
    temporary directory removed when the block ends, as for :func:`exported`.
    """
    fields = {**export_fields(sha256_of(weights), model, input_shape, runtime, runtime_version), **quantizer}
    path = quantized_path(weights, digest(fields))
    if path.is_file():
        check_recorded(path, fields)
        yield path, f"cached int8 model {path}"
        return
    with tempfile.TemporaryDirectory(prefix="alphapose-int8-") as directory:
        scratch = Path(directory)
        start = time.perf_counter()
        onnx = export_onnx(model, input_shape, scratch / "export.onnx")
        quantize(onnx, scratch / path.name)
        seconds = time.perf_counter() - start
        if not writable(path.parent):
            yield (
                scratch / path.name,
                f"{path.parent} is not writable: quantized for this process in {seconds:.1f} s "
                "(each start quantizes again)",
            )
            return
        # the weights and the record first, the model last: a present .xml means a complete entry
        _place(scratch / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        path.with_suffix(".json").write_text(json.dumps(fields, indent=1, sort_keys=True) + "\n")
        _place(scratch / path.name, path)
    yield path, f"quantized to {path} in {seconds:.1f} s"


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A partial file in ``target``'s directory for the block to write; it replaces ``target`` atomically
    when the block ends and is removed when it fails, so a reader never finds a half-written file (another
    process writing the same target has its own partial file)."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _place(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` atomically (:func:`_replacing`)."""
    with _replacing(target) as partial:
        shutil.move(source, partial)


def check_recorded(path: Path, fields: Mapping[str, Any]) -> None:
    """Refuse a cached model whose recorded key fields are missing or differ from ``fields``."""
    record = path.with_suffix(".json")
    try:
        recorded = json.loads(record.read_text())
    except (OSError, ValueError):
        raise CacheError(
            f"{path} has no readable record of what it was made from ({record}); remove both files to "
            "quantize again"
        ) from None
    differing = sorted(k for k in {*fields, *recorded} if recorded.get(k) != fields.get(k))
    if differing:
        raise CacheError(
            f"{path} was made from other inputs than its name says (differing: {', '.join(differing)}); "
            f"remove it and {record.name} to quantize again"
        )
    if not path.with_suffix(".bin").is_file():
        raise CacheError(
            f"{path} has lost its weights file {path.with_suffix('.bin').name}; remove it to quantize again"
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
    with (
        _replacing(path) as partial,
        _deform_conv_symbolic(),
        warnings.catch_warnings(),
        torch.inference_mode(False),
        torch.no_grad(),
    ):
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
