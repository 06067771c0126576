"""Which floating-point precision the two networks run in, and how a network is put into it.

``fp32`` is the reference: the networks exactly as loaded, what the parity tests check bit for bit. The
reduced precisions trade a little agreement for speed where the hardware has the units for them:

* on CUDA, ``fp16`` (what ``auto`` picks) and ``bf16`` run under ``torch.autocast``, which keeps the
  float32 weights and rounds each convolution's inputs;
* on a CPU, ``bf16`` and ``fp16`` convert the weights once (:func:`convert_model`): the network is cast,
  batch norms already folded and channels-last layout kept, and its input is rounded on the way in. On
  the CPU this was measured faster than autocast, which casts every weight again on each forward, and it
  halves the weights' memory (bench/README.md has the side-by-side figures).

Whatever the precision, the networks hand float32 to what follows them: heatmap decoding, pose NMS and
box post-processing always run in float32. A part of a network that must stay float32 says so with a
class attribute ``decodes_in_float32 = True`` (a detector's box decoding: its output stays float32) or is
listed in :data:`FLOAT32_ONLY` (an operation with no reduced-precision CPU kernel: it runs in float32 and
hands the network's dtype on); both work for any ``nn.Module``, so new detectors and pose networks are
covered by the same code.

CPUs run bf16 convolutions fast only with AMX or AVX512-BF16 (fp16: AMX-FP16 or AVX512-FP16); elsewhere
oneDNN emulates them, slower than float32, so :meth:`alphapose.PosePipeline.from_weights_dir` refuses
one the CPU has no units for (:func:`require_cpu_units`); :func:`convert_model` itself runs on any CPU,
which is how the reduced paths are tested anywhere.

``int8`` is not a PyTorch path: it runs a runtime's quantized export (OpenVINO, quantized post-training
on the user's calibration images, :mod:`alphapose.engines.calibration`), on the CPU only. It is fastest with
VNNI or AMX-INT8 (:data:`INT8_UNIT_FLAGS`) and still faster than float32 on an AVX2-only CPU (bench/README.md
has the figures), so no CPU is refused for it; the start-up log says when the CPU lacks those units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from alphapose.engines import PRECISIONS
from alphapose.errors import PrecisionError
from alphapose.pose.models.resnet import DeformConv2d

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# /proc/cpuinfo flags of the units that run each reduced precision at full speed on a CPU.
CPU_UNIT_FLAGS = {"bf16": ("amx_bf16", "avx512_bf16"), "fp16": ("amx_fp16", "avx512_fp16")}
# The /proc/cpuinfo flags of the units that multiply int8 at four times fp32's rate (VNNI, AMX-INT8).
INT8_UNIT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
# Modules with no bfloat16/float16 CPU kernel (torchvision's deform_conv2d): kept float32 when converting.
FLOAT32_ONLY: tuple[type[nn.Module], ...] = (DeformConv2d,)
CPUINFO = Path("/proc/cpuinfo")

Mode = Literal["fp32", "autocast", "converted", "quantized"]


@dataclass(frozen=True)
class Precision:
    """What a pipeline runs its networks in: the requested name resolved for one device."""

    name: str  # fp32, bf16 or fp16 (``auto`` resolved)
    # fp32: untouched; autocast: torch.autocast around the forwards; converted: cast weights; quantized:
    # a runtime's int8 export (a network left in PyTorch runs in fp32)
    mode: Mode
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the convolutions compute in (PyTorch's: float32 for int8, which it does not run)."""
        return DTYPES.get(self.name, torch.float32)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forwards run in: ``torch.autocast`` in autocast mode, else nothing."""
        if self.mode != "autocast":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in this precision: converted in place in converted mode, else returned unchanged."""
        return convert_model(model, self.dtype) if self.mode == "converted" else model

    def describe(self) -> str:
        how = {"fp32": "", "autocast": " autocast", "converted": " weights", "quantized": " quantized"}
        return f"{self.name}{how[self.mode]}"


def parse_precision(value: str) -> str:
    """``value`` checked against :data:`PRECISIONS` (case and surrounding spaces ignored)."""
    name = str(value).strip().lower()
    if name not in PRECISIONS:
        raise PrecisionError(value, f"expected one of {', '.join(PRECISIONS)}")
    return name


def resolve_precision(requested: str, device: torch.device | str) -> Precision:
    """The precision and the way to run it for ``device``.

    ``auto`` keeps the behaviour from before the setting existed: fp16 autocast on CUDA, fp32 elsewhere.
    bf16 and fp16 run under autocast on CUDA and with converted weights on a CPU; int8 runs quantized
    exports, on a CPU only.
    """
    name = parse_precision(requested)
    device_type = torch.device(device).type
    if name == "auto":
        name = "fp16" if device_type == "cuda" else "fp32"
    if name == "fp32":
        return Precision("fp32", "fp32", device_type)
    if name == "int8":
        if device_type != "cpu":
            raise PrecisionError(
                requested,
                f"int8 runs on the CPU only (openvino's quantized export); use fp16 or bf16 on {device}",
            )
        return Precision("int8", "quantized", device_type)
    return Precision(name, "autocast" if device_type == "cuda" else "converted", device_type)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The feature flags of this CPU as Linux lists them (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def has_int8_units(flags: Iterable[str] | None = None) -> bool:
    """Whether this CPU multiplies int8 with VNNI or AMX (else int8 runs on AVX2's slower int8 path)."""
    return bool(frozenset(cpu_flags() if flags is None else flags) & set(INT8_UNIT_FLAGS))


def missing_cpu_units(precision: Precision, flags: Iterable[str] | None = None) -> str | None:
    """Why ``precision`` would run emulated (slower than fp32) on this CPU, or None when it would not."""
    if precision.device_type != "cpu" or precision.name not in CPU_UNIT_FLAGS:
        return None
    wanted = CPU_UNIT_FLAGS[precision.name]
    present = frozenset(cpu_flags() if flags is None else flags)
    if present & set(wanted):
        return None
    looked_for = " or ".join(wanted)
    where = "" if present else f" ({CPUINFO} lists no flags here)"
    return (
        f"{precision.name} on the CPU needs {looked_for} among the CPU flags and this CPU has neither"
        f"{where}: its {precision.name} convolutions would be emulated, slower than fp32; use fp32 (or "
        "auto), or a CPU with one of those units"
    )


def require_cpu_units(precision: Precision, flags: Iterable[str] | None = None) -> None:
    """Raise :class:`PrecisionError` when :func:`missing_cpu_units` finds the units missing."""
    problem = missing_cpu_units(precision, flags)
    if problem:
        raise PrecisionError(precision.name, problem)


def convert_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model``'s weights to ``dtype`` in place, keeping float32 in and out; returns the model.

    Parameters and floating buffers keep their memory format (channels-last stays channels-last).
    Floating tensors passed to the model are cast to ``dtype`` and floating tensors it returns to
    float32, so callers are unchanged. Submodules marked ``decodes_in_float32`` keep float32 weights,
    get float32 inputs and return float32; submodules in :data:`FLOAT32_ONLY` do the same but hand
    ``dtype`` on to the layers after them.
    """
    if getattr(model, "_converted_to", None) is not None:
        raise ValueError(f"model was already converted to {model._converted_to}")
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"convert_model converts to bfloat16 or float16, got {dtype}")
    kept: list[nn.Module] = []
    for module in model.modules():
        float32 = getattr(module, "decodes_in_float32", False) or isinstance(module, FLOAT32_ONLY)
        if module is not model and float32 and not any(_contains(outer, module) for outer in kept):
            kept.append(module)
    kept_tensors = {id(t) for module in kept for t in (*module.parameters(), *module.buffers())}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) not in kept_tensors and param.is_floating_point():
                param.data = param.data.to(dtype)
        for name, buffer in module.named_buffers(recurse=False):
            if id(buffer) not in kept_tensors and buffer.is_floating_point():
                module._buffers[name] = buffer.to(dtype)
    for module in kept:
        module.register_forward_pre_hook(_cast_inputs(torch.float32))
        if not getattr(module, "decodes_in_float32", False):
            module.register_forward_hook(_cast_output(dtype))
    model.register_forward_pre_hook(_cast_inputs(dtype))
    model.register_forward_hook(_cast_output(torch.float32))
    model._converted_to = dtype
    return model


def _contains(outer: nn.Module, inner: nn.Module) -> bool:
    return any(module is inner for module in outer.modules())


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Floating tensors in ``value`` (also inside tuples, lists and dicts) cast to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple | list):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def _cast_inputs(dtype: torch.dtype) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return _cast(args, dtype)

    return hook


def _cast_output(dtype: torch.dtype) -> Callable[[nn.Module, tuple[Any, ...], Any], Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        return _cast(output, dtype)

    return hook
