"""Read a checkpoint safely and load its tensors into a network strictly, with errors a person can act on.

Every official PyTorch checkpoint (the pose networks', YOLOX's) is read by :func:`load_checkpoint` (no
code runs from the file) and goes through :func:`load_strictly`: the file must match the network key for
key and shape for shape, and when it does not, the error lists what is missing, unexpected or of the
wrong shape, and says which other network the file fits. This module imports only torch and the
library's errors, so every loader can use it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alphapose.errors import WeightsError

Shapes = Mapping[str, tuple[int, ...]]
_SHOWN_KEYS = 5


def network_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the state_dict of the network ``build`` makes, built on the meta device (no
    memory, no initialisation cost)."""
    with torch.device("meta"):
        model = build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def describe_mismatch(expected: Shapes, state: Mapping[str, torch.Tensor]) -> str:
    """Empty when ``state`` has exactly the expected keys and shapes, else an account of the differences."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            shown = ", ".join(items[:_SHOWN_KEYS]) + (
                f" (+{len(items) - _SHOWN_KEYS} more)" if len(items) > _SHOWN_KEYS else ""
            )
            parts.append(f"{len(items)} {label}: {shown}")
    if unexpected and all(k.startswith("module.") for k in state):
        parts.append(
            "the keys carry a 'module.' prefix (a DataParallel wrapper); save model.module.state_dict()"
        )
    return "; ".join(parts)


def fitting(candidates: Mapping[str, Callable[[], Shapes]], state: Mapping[str, torch.Tensor]) -> list[str]:
    """The names among ``candidates`` (name -> its expected shapes) whose network ``state`` fits."""
    return [name for name, shapes in candidates.items() if not describe_mismatch(shapes(), state)]


def other_fit_hint(
    candidates: Mapping[str, Callable[[], Shapes]],
    *,
    named: Callable[[Sequence[str]], str],
    advice: Callable[[Sequence[str]], str],
    none: str,
) -> Callable[[Mapping[str, torch.Tensor]], str]:
    """The ``hint`` for :func:`load_strictly` that tells a person which other network a refused file fits.

    The sentence reads "The file fits ``named(fits)``: ``advice(fits)``." when some of ``candidates`` (name
    -> its expected shapes) fit the file, else ``none``; only the words for the kind of network (preset,
    YOLOX variant) and what to do differ between loaders, so the search and the sentence are written here.
    """

    def hint(state: Mapping[str, torch.Tensor]) -> str:
        fits = fitting(candidates, state)
        return f"The file fits {named(fits)}: {advice(fits)}." if fits else none

    return hint


def load_strictly(
    build: Callable[[], nn.Module],
    state: Mapping[str, torch.Tensor],
    *,
    source: str | Path,
    target: str,
    expected: Shapes,
    hint: Callable[[Mapping[str, torch.Tensor]], str],
) -> nn.Module:
    """The network ``build`` makes, holding ``state``'s tensors, in float32 and eval mode on the CPU.

    ``expected`` is the network's key -> shape (:func:`network_shapes`). On a mismatch the
    :class:`WeightsError` reads "``source`` does not fit ``target``: what differs.", then ``hint(state)``:
    which other network the file fits (:func:`other_fit_hint`; called only then, as it may build every
    candidate on the meta device). The network is built on the meta device and takes the checkpoint's
    tensors as its parameters, so no time goes into a random initialisation that would be overwritten;
    whatever the file stores, the weights become float32, as a copy into a built network would give.
    """
    problems = describe_mismatch(expected, state)
    if problems:
        raise WeightsError(f"{source} does not fit {target}: {problems}. {hint(state)}")
    with torch.device("meta"):
        model = build()
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()


def load_checkpoint(path: Path, what: str) -> Any:
    """The object saved in a PyTorch file, read with ``weights_only=True``; ``what`` names it in errors."""
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}"
        ) from exc
