"""Image files to RGB arrays, as every entry point reads them: the function's requests, the tools' files.

Decoding is checked before it starts (the pixel limit on the header, refused formats) and anything a
file can get wrong is one :class:`alphapose.errors.ImageError`; :mod:`alphapose.cvat.request` answers
it with a 4xx.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alphapose.errors import ImageError

# Pillow modes holding more than 8 bits per sample; Image.convert("RGB") would clip them at 255.
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Formats Pillow decodes by running another program (EPS: Ghostscript); never run one on a caller's bytes.
_REFUSED_FORMATS = ("EPS",)
_JPEG_END = b"\xff\xd9"  # the EOI marker that closes a complete JPEG
_EXIF_ORIENTATION = 0x0112
_OPENCV_RGB = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION  # Pillow applies rotations


def rgb_image_size(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of an HxWx3 uint8 RGB array, the form :func:`decode_image` gives: the check of an
    image a caller hands the library, written once (the detector's letterbox, the pose stage on given boxes);
    anything else is a ValueError saying what it got."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an RGB uint8 HxWx3 image array, got shape {shape} dtype {dtype}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    return height, width


def read_image_file(path: Path, *, max_pixels: int) -> np.ndarray:
    """The pixels of the image file at ``path`` (:func:`decode_image`), for the tools and the frames of a
    directory: a file that cannot be read or used is an :class:`ImageError` naming it."""
    try:
        return decode_image(path.read_bytes(), max_pixels=max_pixels, subject="the file")
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ImageError as exc:
        raise ImageError(f"cannot use {path} as an image: {exc}", too_large=exc.too_large) from None


def decode_image(
    data: bytes, *, max_pixels: int, limit_name: str = "ALPHAPOSE_MAX_PIXELS", subject: str = "'image'"
) -> np.ndarray:
    """An image file's pixels as (H, W, 3) uint8 RGB, upright as a viewer shows it.

    The pixel limit is checked on the header, before any pixel is decoded, so a small file that
    declares a huge canvas (a decompression bomb) costs nothing.

    EXIF orientation: CVAT's frame provider already applies it when it writes a task's chunks
    (``rotate_within_exif`` / ``ImageOps.exif_transpose`` in ``cvat/apps/engine/media_extractors.py``)
    and the re-encoded frames carry no orientation tag, so transposing is a no-op for CVAT and makes
    direct callers that send camera JPEGs get keypoints in the coordinates their viewer displays.

    Anything wrong with the file is an :class:`ImageError`; ``limit_name`` is the setting that holds
    ``max_pixels``, named when the image is over it, and ``subject`` what the messages call the file (the
    request's field by default).
    """
    try:
        with warnings.catch_warnings():
            # Our own limit below decides; Pillow's warning threshold is not the policy here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise _over_pillows_cap(max_pixels, limit_name) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{subject} is not an image file of a format Pillow reads (JPEG, PNG, ...)"
        ) from None
    except Exception as exc:  # Pillow raises many exception types on malformed files
        raise ImageError(f"{subject} is not a readable image file: {exc}") from None
    if image.format in _REFUSED_FORMATS:
        raise ImageError(f"{image.format} images are not accepted; send JPEG or PNG")
    width, height = image.size
    if width * height > max_pixels:
        raise _over_the_limit(f"{width}x{height} = {width * height}", max_pixels, limit_name)
    if width == 0 or height == 0:
        raise ImageError(f"the image is empty ({width}x{height})")
    pixels = decode_jpeg_with_opencv(data, image)
    return pixels if pixels is not None else decode_with_pillow(image)


def _over_the_limit(pixels: str, max_pixels: int, limit_name: str) -> ImageError:
    return ImageError(
        f"the image has {pixels} pixels, more than the limit of {max_pixels} ({limit_name}); send a smaller "
        "image or raise the limit",
        too_large=True,
    )


def _over_pillows_cap(max_pixels: int, limit_name: str) -> ImageError:
    """An image Pillow refused on opening, in the words of our own limit.

    Pillow refuses above twice its cap without telling us the size. When that threshold is at least
    ``max_pixels`` (start-up raised the cap to it) the image is over our limit too; below it, the caller
    never raised the cap, and raising the limit would not help where :func:`allow_large_images` does.
    """
    refused_above = 2 * int(Image.MAX_IMAGE_PIXELS)
    if refused_above >= max_pixels:
        return _over_the_limit(f"over {refused_above}", max_pixels, limit_name)
    return ImageError(
        f"the image has over {refused_above} pixels, the most Pillow opens in this process, which is "
        f"below the limit of {max_pixels} ({limit_name}): call "
        f"alphapose.images.decode.allow_large_images({max_pixels}) once at start-up, as the function and "
        "the tools do, or send a smaller image",
        too_large=True,
    )


def allow_large_images(max_pixels: int) -> None:
    """Raise Pillow's decompression-bomb limit to ``max_pixels`` where it is lower: a start-up step.

    Pillow refuses, on opening, any image over 2 x ``MAX_IMAGE_PIXELS`` pixels (about 179 million by
    default), before :func:`decode_image` compares the header with the configured limit; a larger
    configured limit would otherwise be capped there (the refusal then says to call this). Smaller
    images are still refused by that comparison, before any pixel is decoded. The setting is
    process-wide, so the function's ``init_context`` and the command-line tools call this once; the
    parser itself never does.
    """
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def decode_with_pillow(image: Image.Image) -> np.ndarray:
    """An opened image's pixels as (H, W, 3) uint8 RGB, EXIF orientation applied: every format and mode."""
    try:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except Exception as exc:  # truncated or corrupt pixel data, broken EXIF
        raise ImageError(f"the image could not be decoded: {exc}") from None


def decode_jpeg_with_opencv(data: bytes, header: Image.Image) -> np.ndarray | None:
    """The pixels of a plain JPEG decoded by OpenCV, or None where Pillow must decode the file.

    CVAT's frames are JPEGs; OpenCV decodes them faster than Pillow plus the conversion to an array,
    straight into RGB, and gives the very pixels of ``cv2.imread`` that the reference pipeline reads.
    Taken for 8-bit RGB or grey files without EXIF rotation that end with the EOI marker (a truncated
    upload goes to Pillow, which refuses it); on such files both libraries give the same pixels (tested).
    One difference is kept on purpose: a complete JPEG with damaged image data that Pillow refuses as a
    "broken data stream" is decoded as far as it goes, as by ``cv2.imread`` and by the browser in which
    the annotator sees the frame. Anything OpenCV fails on goes to Pillow, which names the problem.
    """
    if header.format != "JPEG" or header.mode not in ("RGB", "L") or not data.endswith(_JPEG_END):
        return None
    try:
        if header.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            return None
    except Exception:  # unreadable EXIF: Pillow's path decides (and names the problem)
        return None
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _OPENCV_RGB)
    except cv2.error:
        return None
    if pixels is None or pixels.shape[:2] != (header.height, header.width):
        return None
    return pixels


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode as (H, W, 3) uint8 RGB.

    Alpha is dropped, not blended: the reference AlphaPose pipeline reads images with
    ``cv2.imread``, which ignores the alpha channel, so the colour values reach the model unchanged.
    High-depth grey images are scaled down to 8 bits (see :func:`_scale_to_uint8`) instead of being
    clipped at 255, which would turn most 16-bit images white.
    """
    if image.mode in _HIGH_DEPTH_MODES:
        full_scale = 65535.0 if image.mode.startswith("I;16") else None
        grey = _scale_to_uint8(np.asarray(image, dtype=np.float64), full_scale)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # applies the palette and its transparency in one step
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as exc:
            raise ImageError(f"unsupported image mode {image.mode}: {exc}") from None
    return np.asarray(image, dtype=np.uint8).copy()


def _scale_to_uint8(values: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Map one high-depth channel linearly to 0..255.

    ``full_scale`` is the value shown as white (65535 for 16-bit data, as browsers display it). When
    the mode does not say (32-bit integers, floats), non-negative data uses the smallest of 1, 255 and
    65535 that holds it, else its maximum; data with negative values is stretched from min to max.
    Non-finite values count as 0.
    """
    values = np.where(np.isfinite(values), values, 0.0)
    low, high = float(values.min()), float(values.max())
    if full_scale is not None or low >= 0:
        low = 0.0
        full_scale = full_scale or next((s for s in (1.0, 255.0, 65535.0) if high <= s), high)
    else:
        full_scale = high
    span = full_scale - low
    if span <= 0:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / span)).astype(np.uint8)
