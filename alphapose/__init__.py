"""AlphaPose in plain PyTorch: official checkpoints in, the official keypoints out.

The stable entry points are re-exported here (see the README's "Python API" section). They are resolved
on first use so that light submodules (skeletons, the CVAT contract's request parsing) do not pay for
importing the networks. Importing the library changes no process-wide setting.
"""

from importlib import import_module
from typing import Any

__version__ = "0.2.0"  # equal to pyproject.toml's (tests/test_packaging.py); names cached exports

_EXPORTS = {
    "load_pose_model": "alphapose.build",
    "load_detector": "alphapose.build",
    "Pose": "alphapose.pipeline",
    "PosePipeline": "alphapose.pipeline",
    "PipelineOptions": "alphapose.options",
    "DEFAULT_PRESET": "alphapose.presets",
    "PRESETS": "alphapose.presets",
    "PosePreset": "alphapose.presets",
    "get_preset": "alphapose.presets",
    "DEFAULT_DETECTOR": "alphapose.detectors",
    "DETECTORS": "alphapose.detectors",
    "DetectorSpec": "alphapose.detectors",
    "get_detector": "alphapose.detectors",
    "configure_cpu_threads": "alphapose.runtime",
    "oks_sigmas": "alphapose.skeletons",
    "FrameSource": "alphapose.video",
    "frame_poses": "alphapose.video",
    "PoseTracker": "alphapose.tracking",
    "TrackerOptions": "alphapose.tracking",
    "TrackedFrame": "alphapose.tracking",
    "track_video": "alphapose.tracking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alphapose' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
