"""Each network made ready to run in the engine chosen for it (:mod:`alphapose.engines`): refused where
the engine cannot run it (:func:`check_engines`), put into its precision in PyTorch or exported and
compiled in a runtime (:func:`prepare_network`), and what it ended up running on, for the start-up log
(:class:`NetworkEngine`, :func:`describe`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alphapose.engines import DEFAULT_ENGINE, ENGINES, NETWORKS, parse_engines
from alphapose.engines.precision import Precision, has_int8_units
from alphapose.errors import OptionError

LOGGER = logging.getLogger(__name__)


def check_engines(value: str, device: torch.device, precision: Precision) -> dict[str, str]:
    """:func:`parse_engines`, with a runtime's refusals: not on CUDA, not installed, not in this precision.

    int8 with the engine left at its default is the precision's problem (the user chose only that);
    with an engine chosen that runs a network in torch, it is the engine's.
    """
    chosen = parse_engines(value)
    if precision.name == "int8" and "torch" in chosen.values():
        if str(value).strip().lower() == DEFAULT_ENGINE:  # left alone: the precision asked for what it lacks
            raise OptionError(
                "precision",
                precision.name,
                f"int8 runs on engine openvino and the engine is {DEFAULT_ENGINE} by default: set "
                "engine=openvino (ALPHAPOSE_ENGINE, --engine), or choose another precision",
            )
        torch_networks = " and ".join(n for n in NETWORKS if chosen[n] == "torch")
        raise OptionError(
            "engine",
            value,
            f"int8 runs in openvino's quantized export and PyTorch has no int8 path, but the "
            f"{torch_networks} would run in torch; use engine openvino (or precision fp32)",
        )
    for name in sorted(set(chosen.values()) - {"torch"}):
        if device.type != "cpu":
            raise OptionError(
                "engine", value, f"{name} runs the networks on the CPU only; use engine torch on {device}"
            )
        problem = ENGINES[name].driver().check_precision(precision)
        if problem:
            raise OptionError("engine", value, problem)
    return chosen


class RuntimeNetwork(nn.Module):
    """A compiled export behind the PyTorch module's interface: float32 NCHW tensor in, float32 out.

    It holds no parameters (so callers that ask a network for its device get the CPU) and computes
    nothing in PyTorch; ``input_size`` is the detector input size the export was made for.
    """

    def __init__(
        self, run: Callable[[np.ndarray], np.ndarray], description: str, input_size: int | None = None
    ) -> None:
        super().__init__()
        self._run = run
        self.description = description
        if input_size is not None:
            self.input_size = input_size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        array = inputs.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self._run(array))


@dataclass(frozen=True)
class NetworkEngine:
    """What one network ended up running on, for the start-up log."""

    network: str
    requested: str
    engine: str  # what runs it: torch, or the runtime
    description: str  # e.g. "onnxruntime 1.31.1 fp32" or "torch bf16 weights"
    note: str = ""  # why it runs elsewhere than requested; where its export lives

    def __str__(self) -> str:
        return self.description + (f" ({self.note})" if self.note else "")

    @classmethod
    def torch(cls, network: str, requested: str, precision: Precision, note: str = "") -> NetworkEngine:
        """A network PyTorch runs, in ``precision``."""
        return cls(network, requested, "torch", f"torch {precision.describe()}", note)


@dataclass(frozen=True)
class Calibration:
    """One network's calibration for int8: what identifies the set (its cache key, part of the quantized
    model's) and its inputs, made only when no quantized model is cached
    (:mod:`alphapose.engines.calibration`)."""

    key: str
    inputs: Callable[[], list[np.ndarray]]


def prepare_network(
    network: str,
    engine: str,
    model: nn.Module,
    precision: Precision,
    weights: Path,
    input_shape: tuple[int, int, int],
    calibration: Calibration | None = None,
) -> tuple[nn.Module, NetworkEngine]:
    """``model`` (folded, channels-last, float32) ready to run in ``engine``, and what runs it.

    ``torch``: the model put into ``precision``. A runtime: the model exported once (cached by the
    weights file's sha256 and the versions, see :mod:`alphapose.engines.export`) and compiled; in int8,
    the export quantized on ``calibration`` (cached with its digest too). When the runtime cannot run one
    of its layers, the model stays in PyTorch (in fp32 for int8), and the note says why.
    """
    if engine == "torch":
        return precision.prepare(model), NetworkEngine.torch(network, engine, precision)
    from alphapose.engines.export import exported, quantized

    driver = ENGINES[engine].driver()
    unsupported = driver.cannot_run(model)
    if unsupported:
        note = f"{engine} cannot run {unsupported}: this network runs in PyTorch"
        if precision.name == "int8":
            precision, note = Precision("fp32", "fp32", precision.device_type), f"{note}, in fp32"
        LOGGER.warning("%s network: %s", network, note)
        return precision.prepare(model), NetworkEngine.torch(network, engine, precision, note)
    if precision.name == "int8":
        if calibration is None:
            raise ValueError("int8 needs the network's calibration")
        fields = {**driver.quantizer(), "calibration": calibration.key}

        def quantize(export: Path, target: Path) -> None:
            LOGGER.info("%s network: quantizing for int8 on its calibration inputs", network)
            driver.quantize(export, target, calibration.inputs())

        made = quantized(model, weights, input_shape, engine, driver.version(), fields, quantize)
    else:
        made = exported(model, weights, input_shape, engine, driver.version())
    with made as (path, note):
        run = driver.compile_export(path, precision, torch.get_num_threads())
    if precision.name == "int8" and not has_int8_units():
        note += "; this CPU has no VNNI or AMX-INT8: int8 runs on its slower AVX2 path"
    description = f"{engine} {driver.version()} {precision.name}"
    size = input_shape[1] if network == "detector" else None
    return RuntimeNetwork(run, description, size), NetworkEngine(network, engine, engine, description, note)


def describe(engines: Mapping[str, NetworkEngine]) -> str:
    """``detector: onnxruntime 1.31.1 fp32; pose: torch fp32 (...)``: one line for the log."""
    return "; ".join(f"{network}: {engine}" for network, engine in engines.items())
