"""The images int8 is calibrated on, and the inputs each network sees on them.

Post-training quantization measures the range of every activation on a set of inputs and fixes the int8
scales from it, so the inputs must be what the network sees in the pipeline: the detector's letterboxed
input (its family's own preparation, BGR 0..255 for YOLOX) and the pose network's normalised person crops
(RGB, mean subtracted), both cut from the user's frames with the same code a request runs. The user names a
directory of frames like those to be annotated (``calibration``); nothing ships with the library, since a
set that does not look like the user's frames sets ranges that clip them. The frames are read as a
request's image is (:func:`alphapose.images.decode.decode_image`, the same file suffixes as a directory of
frames), so the ranges are measured on the pixels inference sees.

A set is identified by :attr:`CalibrationSet.digest`, the sha256 of its files' names and contents: the
quantized models cached beside the weights carry it in their key (with how the frames are read,
:attr:`CalibrationSet.cache_key`), so another set quantizes again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from alphapose.errors import ImageError, OptionError
from alphapose.images import DEFAULT_MAX_PIXELS, FRAME_SUFFIXES
from alphapose.images.decode import decode_image
from alphapose.pose.transforms import crop_persons

# At most this many inputs per network: the quantizer's default statistics subset; more only cost time.
MAX_INPUTS = 300
# Person crops taken from one frame for the pose network, best-scoring boxes first.
CROPS_PER_IMAGE = 4
# How the frames are read, in the int8 cache key beside the set's digest: quantized models cached from
# frames read another way (before: Pillow, clipping 16-bit and float frames at 255) are made again.
FRAME_READING = "decode_image"


@dataclass(frozen=True)
class CalibrationSet:
    """The image files of one calibration directory, in name order, and their digest."""

    directory: Path
    files: tuple[Path, ...]
    digest: str

    @classmethod
    def from_directory(cls, directory: str | Path) -> CalibrationSet:
        """The set in ``directory``; an :class:`OptionError` on ``calibration`` when there is none."""
        path = Path(directory)
        if not path.is_dir():
            raise OptionError("calibration", str(directory), "no such directory (a directory of images)")
        files = tuple(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES))
        if not files:
            raise OptionError(
                "calibration",
                str(directory),
                f"no image files in it ({', '.join(FRAME_SUFFIXES)}); put frames like those to annotate "
                "there",
            )
        digest = hashlib.sha256()
        for file in files:
            try:
                content = file.read_bytes()
            except OSError as exc:
                raise OptionError("calibration", str(directory), f"cannot read {file}: {exc}") from None
            digest.update(json.dumps([file.name, hashlib.sha256(content).hexdigest()]).encode())
        return cls(path, files, digest.hexdigest())

    @property
    def cache_key(self) -> str:
        """What a quantized model is cached under: the set's :attr:`digest` and :data:`FRAME_READING`."""
        return f"{self.digest}:{FRAME_READING}"

    def images(self) -> Iterator[np.ndarray]:
        """Each file as RGB uint8 (H, W, 3), decoded as a request's image is; a file a request would have
        refused is an :class:`OptionError` naming it."""
        for file in self.files:
            yield read_image(file, self.directory)


def read_image(file: Path, directory: Path) -> np.ndarray:
    """``file``'s pixels as :func:`decode_image` gives a request's (upright, high-depth images scaled to 8
    bits, alpha dropped), at most :data:`DEFAULT_MAX_PIXELS` pixels, the function's default limit."""

    def refuse(problem: str) -> OptionError:
        return OptionError("calibration", str(directory), f"{file.name}: {problem}")

    try:
        return decode_image(file.read_bytes(), max_pixels=DEFAULT_MAX_PIXELS, subject="the file")
    except ImageError as exc:
        if exc.too_large:
            raise refuse(
                f"larger than {DEFAULT_MAX_PIXELS} pixels; use frames of the size you annotate"
            ) from None
        raise refuse(str(exc)) from None
    except OSError as exc:
        raise refuse(f"cannot read it ({exc.strerror or exc})") from None


def detector_inputs(
    calibration: CalibrationSet,
    prepare: Callable[[Sequence[np.ndarray], int, torch.device], tuple[torch.Tensor, object]],
    size: int,
) -> list[np.ndarray]:
    """The detector's input (1, 3, size, size) for each image, made by its family's ``prepare``."""
    cpu = torch.device("cpu")
    return [prepare([image], size, cpu)[0].numpy() for image in islice(calibration.images(), MAX_INPUTS)]


def pose_inputs(
    calibration: CalibrationSet,
    detect: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]],
    input_size: tuple[int, int],
) -> list[np.ndarray]:
    """Normalised person crops (1, 3, H, W): the ``CROPS_PER_IMAGE`` best boxes ``detect`` (the float32
    detector) finds in each image; an image where it finds none gives its whole frame, so every image
    calibrates both networks."""
    inputs: list[np.ndarray] = []
    for image in calibration.images():
        boxes = detect(image)[0].numpy()[:CROPS_PER_IMAGE]
        if len(boxes) == 0:
            height, width = image.shape[:2]
            boxes = np.array([[0, 0, width, height]], dtype=np.float32)
        crops = crop_persons(image, boxes, input_size)[0].numpy()
        inputs.extend(crops[i : i + 1] for i in range(len(crops)))
        if len(inputs) >= MAX_INPUTS:
            break
    return inputs[:MAX_INPUTS]
