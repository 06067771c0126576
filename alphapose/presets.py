"""The preset table: every supported pose model is one row of data.

A preset names the network builder, the keypoint set, the official checkpoint (file name and where it is
published) and the input and heatmap sizes. Everything else (the function's labels, the weights download,
the function files, the loader's hints when a checkpoint does not fit) reads this table instead of
branching on model names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from alphapose.errors import lookup
from alphapose.models.fastpose import fastpose_dcn_res50, fastpose_res50
from alphapose.models.fastpose_duc import fastpose_duc_res50_unshuffle, fastpose_duc_res152
from alphapose.models.hrnet import hrnet_w32
from alphapose.models.simplepose import simplepose_res50
from alphapose.skeletons import COCO17, HALPE26, Skeleton
from alphapose.sources import WeightsFile, google_drive


@dataclass(frozen=True)
class PosePreset:
    """One pose model: how to build it and which official file holds its weights."""

    name: str
    description: str
    builder: Callable[[int], nn.Module]
    skeleton: Skeleton
    checkpoint: WeightsFile
    input_size: tuple[int, int] = (256, 192)  # (height, width) of a person crop
    heatmap_size: tuple[int, int] = (64, 48)  # (height, width) of the network output

    def build(self) -> nn.Module:
        """The network with uninitialised weights, in eval mode."""
        return self.builder(self.skeleton.num_keypoints).eval()


PRESETS: dict[str, PosePreset] = {
    p.name: p
    for p in (
        PosePreset(
            name="fastpose_res50_coco",
            description="FastPose, SE-ResNet-50 with DUC head, 17 COCO keypoints (COCO val AP 72.0)",
            builder=fastpose_res50,
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_res50_256x192.pth", google_drive("1kQhnMRURFiy7NsdS8EFL-8vtqEXOgECn")
            ),
        ),
        PosePreset(
            name="fastpose_res50_halpe26",
            description="FastPose, SE-ResNet-50, 26 Halpe keypoints (COCO 17 + head, neck, hip, feet)",
            builder=fastpose_res50,
            skeleton=HALPE26,
            checkpoint=WeightsFile(
                "halpe26_fast_res50_256x192.pth", google_drive("1S-ROA28de-1zvLv-hVfPFJ5tFBYOSITb")
            ),
        ),
        PosePreset(
            name="simplepose_res50_coco",
            description="SimplePose, ResNet-50 with deconvolution head, 17 COCO keypoints (AP 70.6)",
            builder=simplepose_res50,
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "simple_res50_256x192.pth", google_drive("1nxyfUbvWDaaT9eDM7Y31ScSVPlGy6gfw")
            ),
        ),
        PosePreset(
            name="fastpose_dcn_res50_coco",
            description="FastPose, SE-ResNet-50, deformable convs in stages 2-4, 17 COCO keypoints (AP 72.8)",
            builder=fastpose_dcn_res50,
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_dcn_res50_256x192.pth", google_drive("1zUz9YIk6eALCbZrukxD7kQ554nhi1pVv")
            ),
        ),
        PosePreset(
            name="fastpose_duc_res152_coco",
            description="FastPose-DUC, SE-ResNet-152 with three DUC stages, 17 COCO keypoints (AP 73.3)",
            builder=fastpose_duc_res152,
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_421_res152_256x192.pth", google_drive("1kfyedqyn8exjbbNmYq8XGd2EooQjPtF9")
            ),
        ),
        PosePreset(
            name="fastpose_duc_res50_coco",
            description="FastPose-DUC, pixel-unshuffle SE-ResNet-50, 17 COCO keypoints (AP 72.4)",
            builder=fastpose_duc_res50_unshuffle,
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_421_res50-shuffle_256x192.pth", google_drive("1RlnL_YnnmgOM4L9L2szFdUnTjwptqtL-")
            ),
        ),
        PosePreset(
            name="hrnet_w32_coco",
            description="HRNet-W32, 17 COCO keypoints (AP 72.5)",
            builder=hrnet_w32,
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "hrnet_w32_256x192.pth", google_drive("1i63BPlOnp2vSjIZ7ni4Yp3RCPQwqe922")
            ),
        ),
    )
}

DEFAULT_PRESET = "fastpose_res50_coco"


def get_preset(name: str) -> PosePreset:
    """The preset called ``name``; the error lists the valid names."""
    return lookup(PRESETS, name, "preset")


def preset_for_checkpoint(file_name: str) -> PosePreset | None:
    """The first preset whose official checkpoint has this file name."""
    return next((p for p in PRESETS.values() if p.checkpoint.name == file_name), None)
