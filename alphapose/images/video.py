"""Frames of a video file or of a directory of images, read one at a time (their poses:
:meth:`alphapose.pipeline.PosePipeline.frames`).

The decoder is OpenCV's ``VideoCapture`` with its FFmpeg back end: OpenCV is already a run-time
requirement and its wheels bundle FFmpeg, so every container and codec FFmpeg reads is read without
another package, and frames are decoded strictly in order, which is all a tracker needs (PyAV's extra
wheel would buy exact seeking and timestamps, which nothing here uses). The frame count OpenCV reports
is read from the container and may be an estimate; it serves only progress display.

Frames are read as they are asked for, so memory stays flat in the video's length.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from alphapose.errors import ImageError, VideoError
from alphapose.images import DEFAULT_MAX_PIXELS, FRAME_SUFFIXES
from alphapose.images.decode import read_image_file

# AlphaPose's video writer's frame rate (alphapose/utils/writer.py), for frames that come without one.
DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its position, its name in results (AlphaPose's demo names a video's frames
    ``0.jpg``, ``1.jpg``, ...; a directory's keep their file names) and the RGB uint8 pixels."""

    index: int
    name: str
    image: np.ndarray


class FrameSource:
    """A video file or a directory of image files, checked when opened and read as an iterable.

    A directory's frames are decoded as a request's image is (:func:`read_image_file`: upright, high-depth
    images scaled to 8 bits), each at most ``max_pixels``. ``fps`` is the video's frame rate
    (:data:`DEFAULT_FPS` for a directory); ``frame_count`` the container's count (exact for a
    directory), or None when the container does not say.
    """

    def __init__(self, path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._files: list[Path] | None = None
        if self.path.is_dir():
            self._files = sorted(
                (p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                key=_natural_key,
            )
            if not self._files:
                raise VideoError(
                    f"{self.path} holds no image files ({', '.join(FRAME_SUFFIXES)}) to read as frames"
                )
            self.fps, self.frame_count = DEFAULT_FPS, len(self._files)
            return
        if not self.path.is_file():
            raise VideoError(f"{self.path} does not exist: name a video file or a directory of frames")
        capture = self._open()
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        self.fps = fps if fps > 0 else DEFAULT_FPS
        self.frame_count = count if count > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        if self._files is not None:
            for index, file in enumerate(self._files):
                yield Frame(index, file.name, self._read_image(file))
            return
        capture = self._open()
        try:
            for index in itertools.count():
                ok, bgr = capture.read()
                if not ok:
                    if index == 0:
                        raise VideoError(
                            f"cannot read {self.path}: no frame could be decoded (a broken file, or a "
                            "codec OpenCV's FFmpeg lacks)"
                        )
                    return
                yield Frame(index, f"{index}.jpg", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()

    def images(self) -> Iterator[np.ndarray]:
        """The frames' pixels alone."""
        return (frame.image for frame in self)

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise VideoError(
                f"cannot read {self.path} as a video: FFmpeg (through OpenCV) does not recognise it; "
                "check that it is a video file (mp4, avi, mkv, ...) and not truncated"
            )
        return capture

    def _read_image(self, file: Path) -> np.ndarray:
        try:
            return read_image_file(file, max_pixels=self.max_pixels)
        except ImageError as exc:
            raise VideoError(str(exc)) from None


def _natural_key(path: Path) -> list[int | str]:
    """``frame_2`` before ``frame_10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
