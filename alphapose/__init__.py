"""AlphaPose in plain PyTorch: official checkpoints in, the official keypoints out.

The stable entry points are re-exported here (see the README's "Python API" section). They are resolved
on first use so that light submodules (skeletons, request parsing, the CLI's help) do not pay for
importing the networks.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "load_pose_model": "alphapose.build",
    "load_detector": "alphapose.build",
    "Pose": "alphapose.pipeline",
    "PosePipeline": "alphapose.pipeline",
    "DEFAULT_PRESET": "alphapose.presets",
    "PRESETS": "alphapose.presets",
    "PosePreset": "alphapose.presets",
    "get_preset": "alphapose.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alphapose' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
