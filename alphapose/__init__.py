"""AlphaPose in plain PyTorch: official checkpoints in, the official keypoints out.

The stable entry points are re-exported here (see the README's "Python API" section). They are resolved
on first use so that light submodules (skeletons, the CVAT contract's request parsing) do not pay for
importing the networks. Importing the library changes no process-wide setting.
"""

from importlib import import_module
from typing import Any

__version__ = "0.2.0"  # equal to pyproject.toml's (tests/end_to_end/test_packaging.py); names cached exports

_EXPORTS = {
    "load_pose_model": "alphapose.weights.load",
    "load_detector": "alphapose.weights.load",
    "Pose": "alphapose.structures",
    "PosePipeline": "alphapose.pipeline",
    "PipelineOptions": "alphapose.options",
    "DEFAULT_PRESET": "alphapose.pose.presets",
    "PRESETS": "alphapose.pose.presets",
    "PosePreset": "alphapose.pose.presets",
    "get_preset": "alphapose.pose.presets",
    "DEFAULT_DETECTOR": "alphapose.detection.detectors",
    "DETECTORS": "alphapose.detection.detectors",
    "DetectorSpec": "alphapose.detection.detectors",
    "get_detector": "alphapose.detection.detectors",
    "configure_cpu_threads": "alphapose.engines.threads",
    "oks_sigmas": "alphapose.pose.skeletons",
    "FrameSource": "alphapose.images.video",
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
