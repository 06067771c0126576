"""The preset table: every supported pose model is one row of data.

A preset names the network builder, the keypoint set, the official checkpoint (file name and where it is
published) and the input and heatmap sizes. Everything else (the function's labels, the weights download,
the function files, the loader's hints when a checkpoint does not fit) reads this table instead of
branching on model names. The builder is named by a word that :mod:`alphapose.pose.models.builders`
resolves when a network is built, so the table (and the options and command-line flags checked against
it) reads without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alphapose.errors import lookup
from alphapose.pose.nms_params import (
    BODY_NMS,
    WHOLE_BODY_HEATMAP_NMS,
    WHOLE_BODY_REGRESSION_NMS,
    PoseNmsParams,
)
from alphapose.pose.skeletons import COCO17, COCO_WHOLEBODY133, HALPE26, HALPE68, HALPE136, Skeleton
from alphapose.weights.files import WeightsFile, google_drive

if TYPE_CHECKING:
    from torch import nn

HEATMAP_KEYPOINT_THRESHOLD = 0.4
"""Below it a heatmap-decoded keypoint is not shown (AlphaPose's writer.py)."""
REGRESSION_KEYPOINT_THRESHOLD = 0.05
"""Below it a regression-decoded keypoint is not shown: its score is a sigmoid maximum, on another scale."""


@dataclass(frozen=True)
class PosePreset:
    """One pose model: how to build it and which official file holds its weights."""

    name: str
    description: str
    network: str  # the builder's name in alphapose.pose.models.builders.BUILDERS
    skeleton: Skeleton
    checkpoint: WeightsFile
    input_size: tuple[int, int] = (256, 192)  # (height, width) of a person crop
    heatmap_size: tuple[int, int] = (64, 48)  # (height, width) of the network output
    # The last ``regression_joints`` output maps are integral-regression maps, the others heatmaps: 0
    # for the heatmap loss, every joint for the symmetric integral loss, the face and hands (110, or 42
    # without the face) for AlphaPose's combined loss.
    regression_joints: int = 0
    nms: PoseNmsParams = BODY_NMS
    official_config: str = ""  # the AlphaPose config the checkpoint was trained with, for reference

    def __post_init__(self) -> None:
        if not 0 <= self.regression_joints <= self.skeleton.num_keypoints:
            raise ValueError(
                f"preset {self.name}: regression_joints outside 0..{self.skeleton.num_keypoints}"
            )

    def build(self) -> nn.Module:
        """The network with uninitialised weights, in eval mode (the networks are imported here)."""
        from alphapose.pose.models.builders import BUILDERS

        return BUILDERS[self.network](self.skeleton.num_keypoints).eval()

    @property
    def keypoint_thresholds(self) -> tuple[float, ...]:
        """Per-joint display thresholds: AlphaPose's 0.4 for heatmap joints and 0.05 for regression
        joints, the defaults when a request sets no keypoint threshold."""
        heatmap_joints = self.skeleton.num_keypoints - self.regression_joints
        return (HEATMAP_KEYPOINT_THRESHOLD,) * heatmap_joints + (
            REGRESSION_KEYPOINT_THRESHOLD,
        ) * self.regression_joints


_FACE_HANDS = 110  # the last 110 of 133/136 keypoints: 68 face and 2 x 21 hand points
_HANDS = 42


def _whole_body(
    name: str, description: str, network: str, skeleton: Skeleton, checkpoint: str,
    drive_id: str, loss: str, config: str,
) -> PosePreset:  # fmt: skip
    """A whole-body row: decoding and pose NMS follow from the loss the model was trained with, as in
    AlphaPose's writer.py and pPose_nms.py."""
    k = skeleton.num_keypoints
    regression = {"heatmap": 0, "regression": k, "combined": _HANDS if k == 68 else _FACE_HANDS}[loss]
    nms = WHOLE_BODY_HEATMAP_NMS if loss == "heatmap" else WHOLE_BODY_REGRESSION_NMS
    if k == 68:
        nms = BODY_NMS  # the reference changes constants only for 133/136 keypoints
    return PosePreset(
        name=name, description=description, network=network, skeleton=skeleton,
        checkpoint=WeightsFile(checkpoint, google_drive(drive_id)), regression_joints=regression, nms=nms,
        official_config=config,
    )  # fmt: skip


_MD, _H136, _CWB = (
    "configs/halpe_coco_wholebody_136/resnet",
    "configs/halpe_136/resnet",
    "configs/coco_wholebody/resnet",
)

# Checkpoint names: the three the official docs' commands use, the others in their style. Drive ids from
# docs/MODEL_ZOO.md (its "cfg" links of the heatmap Halpe-136 and DCN-regression COCO-WholeBody rows point
# at another config; the model-name links, used here, are right).
WHOLE_BODY_PRESETS = (
    _whole_body(
        "fastpose_res50_wholebody136",
        "FastPose, SE-ResNet-50, 136 whole-body keypoints (body, feet, face, hands), multi-domain, "
        "integral regression (Halpe AP 50.1)",
        "fastpose_res50",
        HALPE136,
        "multi_domain_fast50_regression_256x192.pth",
        "1Bb3kPoFFt-M0Y3ceqNO8DTXi1iNDd4gI",
        "regression",
        f"{_MD}/256x192_res50_lr1e-3_2x-regression.yaml",
    ),
    _whole_body(
        "fastpose_dcn_res50_wholebody136",
        "FastPose-DCN, SE-ResNet-50, 136 whole-body keypoints, multi-domain, combined loss (Halpe AP 49.8)",
        "fastpose_dcn_res50_conv256",
        HALPE136,
        "multi_domain_fast50_dcn_combined_256x192.pth",
        "1wX1Z2ZOoysgSNovlgiEtJKpbR8tUBWYR",
        "combined",
        f"{_MD}/256x192_res50_lr1e-3_2x-dcn-combined.yaml",
    ),
    _whole_body(
        "fastpose_res50_halpe136",
        "FastPose, SE-ResNet-50, 136 Halpe keypoints, integral regression (Halpe AP 44.1)",
        "fastpose_res50_conv256",
        HALPE136,
        "halpe136_fast50_regression_256x192.pth",
        "1_10JYI3O-VbrAiONfL36UxLf9UXMoUYA",
        "regression",
        f"{_H136}/256x192_res50_lr1e-3_2x-regression.yaml",
    ),
    _whole_body(
        "fastpose_res50_halpe136_heatmap",
        "FastPose, SE-ResNet-50, 136 Halpe keypoints, heatmap loss (Halpe AP 41.7)",
        "fastpose_res50_conv256",
        HALPE136,
        "halpe136_fast50_heatmap_256x192.pth",
        "1LbKM2TOxKdpIZoDxCo6ldmOf62pw6z8A",
        "heatmap",
        f"{_H136}/256x192_res50_lr1e-3_2x.yaml",
    ),
    _whole_body(
        "fastpose_dcn_res50_halpe136",
        "FastPose-DCN, SE-ResNet-50, 136 Halpe keypoints, integral regression (Halpe AP 46.2)",
        "fastpose_dcn_res50_conv256",
        HALPE136,
        "halpe136_fast50_dcn_regression_256x192.pth",
        "1S49aDYGVjEJpx4MnFu7TFzzsbp7Si6h_",
        "regression",
        f"{_H136}/256x192_res50_lr1e-3_2x-dcn-regression.yaml",
    ),
    _whole_body(
        "fastpose_dcn_res50_halpe136_combined",
        "FastPose-DCN, SE-ResNet-50, 136 Halpe keypoints, combined loss (Halpe AP 45.4)",
        "fastpose_dcn_res50_conv256",
        HALPE136,
        "halpe136_fast50_dcn_combined_256x192.pth",
        "1jt-V1Zh-eYgX_-2mrBTV9Ip6z7JjApEC",
        "combined",
        f"{_H136}/256x192_res50_lr1e-3_2x-dcn-combined.yaml",
    ),
    _whole_body(
        "fastpose_dcn_res50_halpe136_combined_hand10",
        "FastPose-DCN, SE-ResNet-50, 136 Halpe keypoints, combined loss with 10x hand weight (Halpe AP 47.2)",
        "fastpose_dcn_res50_conv256",
        HALPE136,
        "halpe136_fast50_dcn_combined_hand10_256x192.pth",
        "1nL2KYqxSnSZH8c7PRr_d9KEFxCEiyjAR",
        "combined",
        f"{_H136}/256x192_res50_lr1e-3_2x-dcn-combined.yaml",
    ),
    _whole_body(
        "fastpose_res152_halpe136",
        "FastPose, SE-ResNet-152, 136 Halpe keypoints, integral regression (Halpe AP 45.1)",
        "fastpose_res152_conv256",
        HALPE136,
        "halpe136_fast152_regression_256x192.pth",
        "1zZotfE3WsBe1BxKimlK56wwJuK9E4EDs",
        "regression",
        f"{_H136}/256x192_res152_lr1e-3_1x-duc.yaml",
    ),
    _whole_body(
        "fastpose_res50_wholebody133",
        "FastPose, SE-ResNet-50, 133 COCO-WholeBody keypoints, integral regression (COCO-WholeBody AP 55.4)",
        "fastpose_res50",
        COCO_WHOLEBODY133,
        "coco_wholebody_fast50_regression_256x192.pth",
        "1WQlwRw7KiKBI2Wyb-lvnQX29R29NbhLz",
        "regression",
        f"{_CWB}/256x192_res50_lr1e-3_2x-regression.yaml",
    ),
    _whole_body(
        "fastpose_dcn_res50_wholebody133",
        "FastPose-DCN, SE-ResNet-50, 133 COCO-WholeBody keypoints, integral regression (AP 57.7)",
        "fastpose_dcn_res50_conv256",
        COCO_WHOLEBODY133,
        "coco_wholebody_fast50_dcn_regression_256x192.pth",
        "10MgWM4rMORVaHNPyswal7RtrsehVV79X",
        "regression",
        f"{_CWB}/256x192_res50_lr1e-3_2x-dcn-regression.yaml",
    ),
    _whole_body(
        "fastpose_res50_wholebody133_combined",
        "FastPose, SE-ResNet-50, 133 COCO-WholeBody keypoints, combined loss (AP 57.8)",
        "fastpose_res50_conv256",
        COCO_WHOLEBODY133,
        "coco_wholebody_fast50_combined_256x192.pth",
        "14wrc9q96bYqUc2efT8p8XzdTvLm-LwUT",
        "combined",
        f"{_CWB}/256x192_res50_lr1e-3_2x-combined.yaml",
    ),
    _whole_body(
        "fastpose_dcn_res50_wholebody133_combined",
        "FastPose-DCN, SE-ResNet-50, 133 COCO-WholeBody keypoints, combined loss (AP 58.2)",
        "fastpose_dcn_res50_conv256",
        COCO_WHOLEBODY133,
        "coco_wholebody_fast50_dcn_combined_256x192.pth",
        "1aP0nYujw32H-VoJBVsXS-DsBBY-UwI8Y",
        "combined",
        f"{_CWB}/256x192_res50_lr1e-3_2x-dcn-combined.yaml",
    ),
    _whole_body(
        "fastpose_res152_wholebody133",
        "FastPose, SE-ResNet-152, 133 COCO-WholeBody keypoints, integral regression (AP 56.9)",
        "fastpose_res152_conv256",
        COCO_WHOLEBODY133,
        "coco_wholebody_fast152_regression_256x192.pth",
        "1ktBwkG1KL3_iFbPXAh5gua0zX92p-1KV",
        "regression",
        f"{_CWB}/256x192_res152_lr1e-3_1x-duc.yaml",
    ),
    _whole_body(
        "fastpose_dcn_res50_halpe68",
        "FastPose-DCN, SE-ResNet-50, 68 Halpe keypoints without the face (body, feet, hands), combined loss",
        "fastpose_dcn_res50_conv256",
        HALPE68,
        "halpe68_noface_fast50_dcn_combined_256x192.pth",
        "14Qn9gxm-EVzqFi7v25Y5TqKIvrFLy_BR",
        "combined",
        "configs/halpe_68_noface/resnet/256x192_res50_lr1e-3_2x-dcn-combined.yaml",
    ),
)
"""AlphaPose's whole-body zoo (docs/MODEL_ZOO.md) but the single-hand model, which needs a hand box for
its input rather than a person box, so it cannot follow a person detector."""

PRESETS: dict[str, PosePreset] = {
    p.name: p
    for p in (
        PosePreset(
            name="fastpose_res50_coco",
            description="FastPose, SE-ResNet-50 with DUC head, 17 COCO keypoints (COCO val AP 72.0)",
            network="fastpose_res50",
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_res50_256x192.pth", google_drive("1kQhnMRURFiy7NsdS8EFL-8vtqEXOgECn")
            ),
        ),
        PosePreset(
            name="fastpose_res50_halpe26",
            description="FastPose, SE-ResNet-50, 26 Halpe keypoints (COCO 17 + head, neck, hip, feet)",
            network="fastpose_res50",
            skeleton=HALPE26,
            checkpoint=WeightsFile(
                "halpe26_fast_res50_256x192.pth", google_drive("1S-ROA28de-1zvLv-hVfPFJ5tFBYOSITb")
            ),
        ),
        PosePreset(
            name="simplepose_res50_coco",
            description="SimplePose, ResNet-50 with deconvolution head, 17 COCO keypoints (AP 70.6)",
            network="simplepose_res50",
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "simple_res50_256x192.pth", google_drive("1nxyfUbvWDaaT9eDM7Y31ScSVPlGy6gfw")
            ),
        ),
        PosePreset(
            name="fastpose_dcn_res50_coco",
            description="FastPose, SE-ResNet-50, deformable convs in stages 2-4, 17 COCO keypoints (AP 72.8)",
            network="fastpose_dcn_res50",
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_dcn_res50_256x192.pth", google_drive("1zUz9YIk6eALCbZrukxD7kQ554nhi1pVv")
            ),
        ),
        PosePreset(
            name="fastpose_duc_res152_coco",
            description="FastPose-DUC, SE-ResNet-152 with three DUC stages, 17 COCO keypoints (AP 73.3)",
            network="fastpose_duc_res152",
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_421_res152_256x192.pth", google_drive("1kfyedqyn8exjbbNmYq8XGd2EooQjPtF9")
            ),
        ),
        PosePreset(
            name="fastpose_duc_res50_coco",
            description="FastPose-DUC, pixel-unshuffle SE-ResNet-50, 17 COCO keypoints (AP 72.4)",
            network="fastpose_duc_res50_unshuffle",
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "fast_421_res50-shuffle_256x192.pth", google_drive("1RlnL_YnnmgOM4L9L2szFdUnTjwptqtL-")
            ),
        ),
        PosePreset(
            name="hrnet_w32_coco",
            description="HRNet-W32, 17 COCO keypoints (AP 72.5)",
            network="hrnet_w32",
            skeleton=COCO17,
            checkpoint=WeightsFile(
                "hrnet_w32_256x192.pth", google_drive("1i63BPlOnp2vSjIZ7ni4Yp3RCPQwqe922")
            ),
        ),
        *WHOLE_BODY_PRESETS,
    )
}

DEFAULT_PRESET = "fastpose_res50_coco"


def get_preset(name: str) -> PosePreset:
    """The preset called ``name``; the error lists the valid names."""
    return lookup(PRESETS, name, "preset")


def preset_for_checkpoint(file_name: str) -> PosePreset | None:
    """The first preset whose official checkpoint has this file name."""
    return next((p for p in PRESETS.values() if p.checkpoint.name == file_name), None)
