"""Drawing the function's CVAT answer on the image it was computed from.

The input is the answer itself (a list of CVAT skeletons), so a local prediction and a deployed
function's reply are drawn by the same code. Edges come from the skeleton table whose keypoint names
match the answer's element labels; keypoints sent ``outside`` are not drawn, nor edges touching them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alphapose.pose.skeletons import SKELETONS, Skeleton

# RGB colours by body side: the person's left, right, and the midline.
LEFT_COLOUR = (255, 140, 0)
RIGHT_COLOUR = (0, 160, 255)
CENTRE_COLOUR = (60, 220, 60)


def find_skeleton(labels: Sequence[str]) -> Skeleton | None:
    """The keypoint set whose names are exactly ``labels``, in order."""
    return next((s for s in SKELETONS.values() if s.keypoints == tuple(labels)), None)


def draw_skeletons(image: np.ndarray, annotations: Sequence[dict[str, Any]]) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 RGB image with every skeleton of a CVAT answer drawn on it."""
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 320))
    for annotation in annotations:
        if annotation.get("type") != "skeleton":
            continue
        elements = annotation.get("elements", [])
        points = [_pixel(e["points"]) for e in elements]
        visible = [not e.get("outside", False) for e in elements]
        names = [e["label"] for e in elements]
        skeleton = find_skeleton(names)
        for a, b in skeleton.edges if skeleton else ():
            if visible[a] and visible[b]:
                colour = _side_colour(names[a], names[b])
                cv2.line(canvas, points[a], points[b], colour, thickness, cv2.LINE_AA)
        for name, point, shown in zip(names, points, visible, strict=True):
            if shown:
                cv2.circle(canvas, point, thickness + 2, _side_colour(name, name), -1, cv2.LINE_AA)
    return canvas


def draw_labels(image: np.ndarray, labels: Sequence[tuple[str, tuple[float, float]]]) -> np.ndarray:
    """A copy of an RGB image with each text written just inside its (x, y) point (a track's id at the
    top-left corner of its person's box), white on a dark patch so it reads on any background."""
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    scale = max(0.4, min(canvas.shape[:2]) / 800)
    thickness = max(1, round(scale * 2))
    for text, (x, y) in labels:
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        left, top = max(0, round(x)), max(0, round(y))
        cv2.rectangle(canvas, (left, top), (left + width + 4, top + height + baseline + 4), (0, 0, 0), -1)
        cv2.putText(
            canvas,
            text,
            (left + 2, top + height + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return canvas


class VideoWriter:
    """RGB frames into a video file: MPEG-4 part 2 (``mp4v``), the codec AlphaPose's demo writes, which
    OpenCV's bundled FFmpeg encodes in any of the containers of :data:`tools.output.RENDER_SUFFIXES`."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path, self.size = Path(path), size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise OSError(f"could not open {self.path} for writing a video (unsupported extension?)")

    def write(self, image: np.ndarray) -> None:
        """Append a frame; one of another size than the first is scaled to it."""
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        self._writer.release()


def save_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image; the format follows the file extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path} (unsupported extension?)")


def _pixel(point: Sequence[float]) -> tuple[int, int]:
    return round(point[0]), round(point[1])


def _side_colour(a: str, b: str) -> tuple[int, int, int]:
    """Left or right when both ends are on that side, else the midline colour."""
    if a.startswith("left_") and b.startswith("left_"):
        return LEFT_COLOUR
    if a.startswith("right_") and b.startswith("right_"):
        return RIGHT_COLOUR
    return CENTRE_COLOUR
