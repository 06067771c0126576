"""Person crops in, keypoints out: the geometry between the image and the pose network.

Every constant and rounding step follows AlphaPose's test-time transform so that official checkpoints
see the same pixels and their heatmaps map back to the same image coordinates:

* a detector box is widened to the input aspect ratio (w/h = 0.75) and enlarged 1.25x (the "crop box");
* the crop box is warped to 256x192 with bilinear sampling and a zero border, computed in float32 from
  three points exactly as the reference does;
* pixels are scaled to [0, 1] and the means (0.406, 0.457, 0.480) are subtracted from R, G, B (no std);
* a heatmap peak is refined by a quarter cell towards the higher neighbour, then mapped through the
  inverse of the same affine construction;
* a model trained with the symmetric integral loss (all joints, or the face and hands of a combined-loss
  model) gives maps whose sigmoid-normalised expectation is the joint, mapped back the same way.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from alphapose.pose.skeletons import Skeleton

PIXEL_MEANS = (
    0.406,
    0.457,
    0.480,
)  # subtracted from R, G, B (ImageNet means in BGR order: a reference quirk)
CROP_SCALE = 1.25


def box_to_center_scale(
    boxes: np.ndarray, aspect_ratio: float, scale_mult: float = CROP_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """Detector boxes (N, 4) xyxy -> crop centres (N, 2) and sizes (N, 2), in float32 like the reference."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x, y = boxes[:, 0], boxes[:, 1]
    w, h = boxes[:, 2] - x, boxes[:, 3] - y
    center = np.stack([x + w * np.float32(0.5), y + h * np.float32(0.5)], axis=1)
    ar = np.float32(aspect_ratio)
    wide, tall = w > ar * h, w < ar * h
    h = np.where(wide, w / ar, h)
    w = np.where(tall, h * ar, w)
    scale = np.stack([w, h], axis=1).astype(np.float32) * np.float32(scale_mult)
    return center.astype(np.float32), scale


def center_scale_to_box(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The crop box (N, 4) xyxy that the warp samples; it may extend beyond the image."""
    top_left = center - scale * np.float32(0.5)
    far_edge = top_left + scale  # as the reference computes it (not centre + half)
    return np.concatenate([top_left, far_edge], axis=1).astype(np.float32)


def affine_matrix(
    center: np.ndarray, width: float, out_size: tuple[int, int], inverse: bool = False
) -> np.ndarray:
    """2x3 matrix mapping a region of ``width`` centred on ``center`` onto an ``out_size`` (h, w) grid.

    Built from three float32 point pairs (centre, centre shifted up by half the width, and that point
    turned by 90 degrees) like the reference, so rounding matches it to the last bit.
    """
    out_h, out_w = out_size
    src = _three_points(center, width)
    dst = _three_points(np.array([out_w * 0.5, out_h * 0.5], dtype=np.float32), out_w)
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def _three_points(center: np.ndarray, width: float) -> np.ndarray:
    """Centre, the point half a width above it, and the third corner found by turning their float32
    difference by 90 degrees (the difference, not the half width, carries the reference's rounding)."""
    points = np.zeros((3, 2), dtype=np.float32)
    center = np.asarray(center, dtype=np.float64)  # sums in float64, rounded once when stored
    points[0] = center
    points[1] = center + np.array([0.0, -0.5 * float(width)])
    direct = points[0] - points[1]
    points[2] = points[1] + np.array([-direct[1], direct[0]], dtype=np.float32)
    return points


def normalize_crop(crop: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB crop -> 3xHxW float32 network input.

    The reference divides by 255 only when the crop's maximum exceeds 1; kept for identical inputs on
    (nearly) black crops.
    """
    chw = crop.transpose(2, 0, 1).astype(np.float32)
    if chw.max() > 1:
        chw /= 255.0
    chw -= np.asarray(PIXEL_MEANS, dtype=np.float32)[:, None, None]
    return chw


def crop_persons(
    image: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int]
) -> tuple[torch.Tensor, np.ndarray]:
    """Warp every box of an RGB uint8 image to the network input.

    Returns the batch (N, 3, H, W) float32 and the crop boxes (N, 4) needed to map heatmaps back.
    """
    in_h, in_w = input_size
    center, scale = box_to_center_scale(boxes, aspect_ratio=in_w / in_h)
    batch = np.empty((len(center), 3, in_h, in_w), dtype=np.float32)
    for i, (c, s) in enumerate(zip(center, scale, strict=True)):
        matrix = affine_matrix(c, s[0], input_size)
        crop = cv2.warpAffine(image, matrix, (in_w, in_h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        batch[i] = normalize_crop(crop)
    return torch.from_numpy(batch), center_scale_to_box(center, scale)


def crop_persons_batched(
    image: torch.Tensor, boxes: np.ndarray, input_size: tuple[int, int]
) -> tuple[torch.Tensor, np.ndarray]:
    """:func:`crop_persons` as one ``grid_sample`` on the image's device: the path for a GPU, where the
    crops then never leave it.

    ``image`` is the (H, W, 3) uint8 RGB image as a tensor. Each output pixel samples the point that
    OpenCV's ``warpAffine`` samples (the inverse of the same matrix), bilinearly with a zero border, and
    is rounded to a whole grey level as the uint8 OpenCV crop is; the batch equals :func:`crop_persons`
    to within one grey level (1/255) per value.
    """
    in_h, in_w = input_size
    height, width = image.shape[:2]
    center, scale = box_to_center_scale(boxes, aspect_ratio=in_w / in_h)
    # dst -> src maps, inverted in float64 as warpAffine inverts the forward matrix internally.
    inverse = np.array(
        [
            cv2.invertAffineTransform(affine_matrix(c, s[0], input_size))
            for c, s in zip(center, scale, strict=True)
        ],
        dtype=np.float64,
    ).reshape(-1, 2, 3, 1, 1)
    maps = torch.from_numpy(inverse).to(image.device, torch.float32)
    ys, xs = torch.meshgrid(
        torch.arange(in_h, dtype=torch.float32, device=image.device),
        torch.arange(in_w, dtype=torch.float32, device=image.device),
        indexing="ij",
    )
    # Element-wise products, not a matmul: float32 whatever the TF32 and autocast settings.
    source = maps[:, :, 0] * xs + maps[:, :, 1] * ys + maps[:, :, 2]  # (N, 2, H, W) source x, y
    # grid_sample's align_corners=False convention: pixel i has its centre at (2i + 1) / size - 1.
    sizes = torch.tensor([width, height], dtype=torch.float32, device=image.device)
    grid = (2 * source.permute(0, 2, 3, 1) + 1) / sizes - 1
    planes = image.permute(2, 0, 1).float().expand(len(grid), -1, -1, -1)  # one image, N views, no copies
    crops = torch.nn.functional.grid_sample(
        planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    ).round()
    scaled = torch.where(crops.amax(dim=(1, 2, 3), keepdim=True) > 1, crops / 255.0, crops)
    means = torch.tensor(PIXEL_MEANS, dtype=torch.float32, device=image.device)
    return scaled - means[:, None, None], center_scale_to_box(center, scale)


def flip_heatmaps(heatmaps: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Output maps of horizontally flipped crops, brought back to the unflipped frame.

    The reference does this to the raw outputs whatever the loss (heatmaps and integral-regression
    logits alike, shift included) and averages them with the plain crops' outputs before decoding.

    Mirror the width, swap left/right channels, then shift one column right to undo the off-by-one of
    mirroring a pixel grid. The shift reads from a copy: the reference shifts in place between
    overlapping views, which current PyTorch computes inconsistently.
    """
    out = heatmaps.flip(-1)[:, skeleton.flip_permutation()]
    shifted = out.clone()
    shifted[..., 1:] = out[..., :-1]
    return shifted


def decode_outputs(
    outputs: np.ndarray | torch.Tensor, crop_boxes: np.ndarray, regression_joints: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Network outputs (N, K, h, w) -> keypoints (N, K, 2) float32 image pixels and scores (N, K) float32.

    The first K - ``regression_joints`` maps are heatmaps (:func:`decode_heatmaps`), the last
    ``regression_joints`` integral-regression maps (:func:`decode_regression`): 0 for a model trained
    with the heatmap loss, K for one trained with the symmetric integral loss, and the face and hand
    joints for one trained with AlphaPose's combined loss.
    """
    outputs = torch.as_tensor(outputs, dtype=torch.float32)
    k = outputs.shape[1]
    if not 0 <= regression_joints <= k:
        raise ValueError(f"regression_joints must be between 0 and {k}, got {regression_joints}")
    split = k - regression_joints
    parts = []
    if split:
        parts.append(decode_heatmaps(outputs[:, :split].numpy(), crop_boxes))
    if regression_joints:
        parts.append(decode_regression(outputs[:, split:], crop_boxes))
    if len(parts) == 1:
        return parts[0]
    return (
        np.concatenate([parts[0][0], parts[1][0]], axis=1),
        np.concatenate([parts[0][1], parts[1][1]], axis=1),
    )


def decode_heatmaps(heatmaps: np.ndarray, crop_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (N, K, h, w) and crop boxes (N, 4) -> keypoints (N, K, 2) float32 in image pixels and
    scores (N, K) float32 (the raw heatmap maxima)."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    n, k, hm_h, hm_w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(axis=2)
    scores = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    px, py = idx % hm_w, idx // hm_w
    found = scores > 0
    px, py = (
        np.where(found, px, 0),
        np.where(found, py, 0),
    )  # the reference zeroes peaks that are not positive

    coords = np.stack([px, py], axis=2).astype(np.float32)
    inner = (px > 1) & (px < hm_w - 1) & (py > 1) & (py < hm_h - 1)
    xl, xr = np.clip(px - 1, 0, hm_w - 1), np.clip(px + 1, 0, hm_w - 1)
    yu, yd = np.clip(py - 1, 0, hm_h - 1), np.clip(py + 1, 0, hm_h - 1)
    rows, joints = np.arange(n)[:, None], np.arange(k)[None, :]
    dx = heatmaps[rows, joints, py, xr] - heatmaps[rows, joints, py, xl]
    dy = heatmaps[rows, joints, yd, px] - heatmaps[rows, joints, yu, px]
    coords += np.where(inner[..., None], np.sign(np.stack([dx, dy], axis=2)) * np.float32(0.25), 0).astype(
        np.float32
    )
    return _heatmap_to_image(coords, crop_boxes, (hm_h, hm_w)), scores.astype(np.float32)


def decode_regression(
    outputs: np.ndarray | torch.Tensor, crop_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Integral-regression maps (N, K, h, w) -> keypoints (N, K, 2) float32 image pixels, scores (N, K).

    The symmetric integral decoding with sigmoid normalisation: each map goes through a sigmoid, whose
    maximum is the joint's score; normalised to sum 1, its column and row marginals give the expected
    x and y in heatmap cells. The reference takes them to relative units (divide by the map size, minus
    a half) and back in float32 before the same inverse crop warp as the heatmap path; the round trip
    is kept for identical rounding.
    """
    maps = torch.as_tensor(outputs, dtype=torch.float32)
    n, k, hm_h, hm_w = maps.shape
    probs = maps.reshape(n, k, -1).sigmoid()
    scores = probs.max(dim=2).values
    probs = (probs / probs.sum(dim=2, keepdim=True)).reshape(n, k, hm_h, hm_w)
    x = (probs.sum(dim=2) * torch.arange(hm_w, dtype=torch.float32)).sum(dim=2) / float(hm_w) - 0.5
    y = (probs.sum(dim=3) * torch.arange(hm_h, dtype=torch.float32)).sum(dim=2) / float(hm_h) - 0.5
    coords = torch.stack([x, y], dim=2).numpy()
    coords[..., 0] = (coords[..., 0] + np.float32(0.5)) * np.float32(hm_w)
    coords[..., 1] = (coords[..., 1] + np.float32(0.5)) * np.float32(hm_h)
    return _heatmap_to_image(coords, crop_boxes, (hm_h, hm_w)), scores.numpy()


def _heatmap_to_image(
    coords: np.ndarray, crop_boxes: np.ndarray, heatmap_size: tuple[int, int]
) -> np.ndarray:
    """Heatmap-cell coordinates (N, K, 2) float32 -> image pixels through each crop box's inverse warp."""
    hm_h, hm_w = heatmap_size
    keypoints = np.empty_like(coords, dtype=np.float32)
    # The reference reads each float32 crop box as Python floats: its centre and width are float64.
    for i, box in enumerate(np.asarray(crop_boxes, dtype=np.float32).astype(np.float64)):
        w, h = box[2] - box[0], box[3] - box[1]
        inv = affine_matrix(np.array([box[0] + w * 0.5, box[1] + h * 0.5]), w, (hm_h, hm_w), inverse=True)
        x, y = coords[i, :, 0].astype(np.float64), coords[i, :, 1].astype(np.float64)
        # Written out rather than a matrix product: BLAS may fuse or reorder the sums.
        keypoints[i, :, 0] = x * inv[0, 0] + y * inv[0, 1] + inv[0, 2]
        keypoints[i, :, 1] = x * inv[1, 0] + y * inv[1, 1] + inv[1, 2]
    return keypoints
