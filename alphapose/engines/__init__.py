"""Which runtime runs each network: PyTorch itself, or an ONNX export of it in ONNX Runtime or OpenVINO.

The networks are always built by this library, from the official checkpoints, strictly loaded and with
their batch norms folded (:mod:`alphapose.weights.load`); an engine other than ``torch`` exports that module
once to ONNX (:mod:`alphapose.engines.export`, cached beside the weights) and runs the export. Pre- and
post-processing (letterbox, crops, box selection, heatmap decoding, pose NMS) stay the library's for
every engine, so only the two forward passes change hands.

``engine`` is one name for both networks (``onnxruntime``) or one per network
(``detector=onnxruntime,pose=openvino``; a network not named runs in ``torch``). A runtime that cannot
run a layer of a network (OpenVINO has no ONNX ``DeformConv``) leaves that network in PyTorch and says
so in :attr:`~alphapose.engines.prepare.NetworkEngine.note`, which the function's start-up log shows. The
runtimes run on the CPU only; each is a separate, optional package (the ``onnxruntime`` and ``openvino``
extras).

Precision ``int8`` runs each network's export quantized post-training on the user's calibration images
(:class:`~alphapose.engines.prepare.Calibration`), in a runtime that quantizes (OpenVINO); PyTorch has no
int8 path here, so a network the runtime cannot run stays in PyTorch in fp32, and the note says so.

This module holds what a user chooses, as data that reads without PyTorch (the options and the
command-line flags are checked against it): the engine table (:data:`ENGINES`, :func:`parse_engines`) and
the precision names (:data:`PRECISIONS`, put into effect by :mod:`alphapose.engines.precision`).
:mod:`alphapose.engines.prepare` makes a network ready to run in its engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from alphapose.errors import OptionError, install_hint

NETWORKS = ("detector", "pose")
DEFAULT_ENGINE = "torch"
# the precisions a user may choose; alphapose.engines.precision puts them into effect
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class EngineSpec:
    """One row of the engine table: the package it needs and the module of ours that drives it."""

    name: str
    package: str | None  # the import name of the runtime; None: PyTorch itself
    # our module with ``version``, ``cannot_run``, ``check_precision``, ``compile_export`` (and, for a
    # runtime that runs int8, ``quantizer`` and ``quantize``)
    module: str | None
    extra: str | None  # the package extra that installs it

    def install_hint(self) -> str:
        return f"install it with {install_hint(self.extra)}"

    def driver(self) -> ModuleType:
        """Our module for this runtime; an :class:`OptionError` on ``engine`` when the runtime is missing."""
        if self.package is None or self.module is None:
            raise ValueError(f"the {self.name} engine runs the PyTorch module itself")
        if find_spec(self.package) is None:
            raise OptionError(
                "engine", self.name, f"the {self.package} package is not installed; " + self.install_hint()
            )
        return import_module(self.module)


ENGINES: dict[str, EngineSpec] = {
    "torch": EngineSpec("torch", None, None, None),
    "onnxruntime": EngineSpec(
        "onnxruntime", "onnxruntime", "alphapose.engines.onnxruntime_engine", "onnxruntime"
    ),
    "openvino": EngineSpec("openvino", "openvino", "alphapose.engines.openvino_engine", "openvino"),
}


def parse_engines(value: str) -> dict[str, str]:
    """``value`` as network -> engine name: ``NAME`` for both networks, or ``detector=NAME,pose=NAME``.

    An :class:`OptionError` on ``engine`` names what is wrong and what is accepted.
    """
    text = str(value).strip().lower()
    choices = ", ".join(ENGINES)
    if "=" not in text and "," not in text:
        if text not in ENGINES:
            raise OptionError(
                "engine", value, f"unknown engine; choose one of: {choices} (or detector=NAME,pose=NAME)"
            )
        return dict.fromkeys(NETWORKS, text)
    chosen = dict.fromkeys(NETWORKS, DEFAULT_ENGINE)
    for part in text.split(","):
        network, _, name = (piece.strip() for piece in part.partition("="))
        if network not in NETWORKS or name not in ENGINES:
            raise OptionError(
                "engine",
                value,
                f"expected NAME or detector=NAME,pose=NAME with NAME one of "
                f"{choices}; {part.strip()!r} is not",
            )
        chosen[network] = name
    return chosen
