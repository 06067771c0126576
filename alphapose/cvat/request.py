"""Parsing and validation of the function's request body, up to an RGB image array.

CVAT posts ``{"image": <base64 of the frame file>, "threshold": <float, only when non-zero>}`` with
``Content-Type: application/json``; Nuclio hands the handler a dict for exactly that content type and raw
bytes for any other (``nuctl invoke`` without ``-c``, ``application/json; charset=utf-8``). Everything a
caller can get wrong surfaces as one :class:`RequestError` that carries the HTTP status to answer with.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alphapose.cvat.errors import RequestError

OUTPUT_FORMATS = ("cvat", "coco")

_DATA_URL_PREFIX = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
# Pillow modes holding more than 8 bits per sample; Image.convert("RGB") would clip them at 255.
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Formats Pillow decodes by running another program (EPS: Ghostscript); never run one on a caller's bytes.
_REFUSED_FORMATS = ("EPS",)
_JPEG_END = b"\xff\xd9"  # the EOI marker that closes a complete JPEG
_EXIF_ORIENTATION = 0x0112
_OPENCV_RGB = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION  # Pillow applies rotations
_SHOWN_CHARACTERS = 40  # longest value quoted back in an error detail


@dataclass(frozen=True)
class PoseRequest:
    """A validated request: the decoded image and the answer options."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied
    threshold: float  # persons whose detector score is below this are dropped
    keypoint_threshold: float | None  # keypoints below it are outside; None: the preset's per-keypoint ones
    output_format: str  # "cvat" or "coco"
    image_id: int | str  # echoed in the coco results


def parse_body(body: Any, *, decoded: bool = False) -> dict[str, Any]:
    """The request as a dict, whatever form Nuclio delivered the body in.

    ``decoded`` says Nuclio already parsed the body as JSON (it does for exactly ``application/json``):
    a str is then a JSON string, not JSON text to parse again, so every content type refuses the body
    ``"text"`` the same way.
    """
    if isinstance(body, dict):
        return body
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if isinstance(body, bytes) or (isinstance(body, str) and not decoded):
        if not body.strip():
            raise RequestError(400, "invalid_body", "the body is empty; expected a JSON object with 'image'")
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise RequestError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(
            400, "invalid_body", f"expected a JSON object with 'image', got {_json_type(body)}"
        )
    return body


def parse_request(
    body: Any, *, max_pixels: int, keypoint_threshold: float | None, decoded: bool = False
) -> PoseRequest:
    """Validate every field, then decode the image (cheap checks first).

    ``keypoint_threshold`` is the function's default, used when the request does not set one (None: the
    preset's own per-keypoint thresholds apply);
    ``decoded`` is :func:`parse_body`'s. Unknown fields are ignored so that newer callers keep working.
    """
    data = parse_body(body, decoded=decoded)
    threshold = _probability(data, "threshold", "invalid_threshold", default=0.0)
    keypoint_threshold = _probability(
        data, "keypoint_threshold", "invalid_keypoint_threshold", default=keypoint_threshold
    )
    output_format = data.get("format", "cvat")
    if output_format not in OUTPUT_FORMATS:
        raise RequestError(
            400,
            "invalid_format",
            f"'format' must be one of {', '.join(OUTPUT_FORMATS)}, got {_shown(output_format)}",
        )
    image_id = data.get("image_id", 0)
    if isinstance(image_id, bool) or not isinstance(image_id, int | str):
        raise RequestError(
            400, "invalid_image_id", f"'image_id' must be an integer or a string, got {_json_type(image_id)}"
        )
    image = decode_image(decode_base64(data.get("image")), max_pixels=max_pixels)
    return PoseRequest(image, threshold, keypoint_threshold, output_format, image_id)


def decode_base64(value: Any) -> bytes:
    """The bytes of the ``image`` field; a data-URL prefix, line breaks and missing padding are tolerated.

    CVAT sends plain standard base64, which one strict pass decodes without copying the text; anything
    else takes the lenient path (:func:`decode_base64_lenient`), so both give the same bytes.
    """
    if value is None or value == "":
        raise RequestError(400, "missing_image", "the request has no 'image' (a base64-encoded image file)")
    if not isinstance(value, str):
        raise RequestError(
            400, "invalid_image_field", f"'image' must be a base64 string, got {_json_type(value)}"
        )
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        data = decode_base64_lenient(value)
    if not data:
        raise RequestError(400, "missing_image", "'image' decodes to no bytes")
    return data


def decode_base64_lenient(text: str) -> bytes:
    """Base64 after dropping a data-URL prefix and whitespace, mapping the URL-safe alphabet and padding."""
    text = _WHITESPACE.sub("", _DATA_URL_PREFIX.sub("", text.strip(), count=1))
    text = text.replace("-", "+").replace("_", "/")  # the URL-safe alphabet decodes to the same bytes
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, "invalid_base64", f"'image' is not valid base64: {exc}") from None


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """An image file's pixels as (H, W, 3) uint8 RGB, upright as a viewer shows it.

    The pixel limit is checked on the header, before any pixel is decoded, so a small file that
    declares a huge canvas (a decompression bomb) costs nothing.

    EXIF orientation: CVAT's frame provider already applies it when it writes a task's chunks
    (``rotate_within_exif`` / ``ImageOps.exif_transpose`` in ``cvat/apps/engine/media_extractors.py``)
    and the re-encoded frames carry no orientation tag, so transposing is a no-op for CVAT and makes
    direct callers that send camera JPEGs get keypoints in the coordinates their viewer displays.
    """
    try:
        with warnings.catch_warnings():
            # Our own limit below decides; Pillow's warning threshold is not the policy here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise RequestError(
            413, "image_too_large", f"the image is too large to decode safely: {exc}"
        ) from None
    except UnidentifiedImageError:
        raise RequestError(
            400, "invalid_image", "'image' is not an image file of a format Pillow reads (JPEG, PNG, ...)"
        ) from None
    except Exception as exc:  # Pillow raises many exception types on malformed files
        raise RequestError(400, "invalid_image", f"'image' is not a readable image file: {exc}") from None
    if image.format in _REFUSED_FORMATS:
        raise RequestError(400, "invalid_image", f"{image.format} images are not accepted; send JPEG or PNG")
    width, height = image.size
    if width * height > max_pixels:
        raise RequestError(
            413,
            "image_too_large",
            f"the image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels} "
            "(ALPHAPOSE_MAX_PIXELS); send a smaller image or raise the limit",
        )
    if width == 0 or height == 0:
        raise RequestError(400, "invalid_image", f"the image is empty ({width}x{height})")
    pixels = decode_jpeg_with_opencv(data, image)
    return pixels if pixels is not None else decode_with_pillow(image)


def allow_large_images(max_pixels: int) -> None:
    """Raise Pillow's decompression-bomb limit to ``max_pixels`` where it is lower: a start-up step.

    Pillow refuses, on opening, any image over 2 x ``MAX_IMAGE_PIXELS`` pixels (about 179 million by
    default), before :func:`decode_image` compares the header with the configured limit; a larger
    configured limit would otherwise be silently capped there. Smaller images are still refused by
    that comparison, before any pixel is decoded. The setting is process-wide, so the function's
    ``init_context`` and the command-line tools call this once; the parser itself never does.
    """
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def decode_with_pillow(image: Image.Image) -> np.ndarray:
    """An opened image's pixels as (H, W, 3) uint8 RGB, EXIF orientation applied: every format and mode."""
    try:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except RequestError:
        raise
    except Exception as exc:  # truncated or corrupt pixel data, broken EXIF
        raise RequestError(400, "invalid_image", f"the image could not be decoded: {exc}") from None


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
            raise RequestError(400, "invalid_image", f"unsupported image mode {image.mode}: {exc}") from None
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


def _probability(data: dict[str, Any], key: str, error: str, *, default: float | None) -> float | None:
    """An optional number in [0, 1]; JSON null means "not given" (bool is not a number).

    The range is checked before any conversion: a JSON integer too large for a float stays an int.
    """
    value = data.get(key)
    if value is None:
        return default
    # value != value finds NaN; math.isnan would overflow on a huge integer
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise RequestError(400, error, f"'{key}' must be a number in [0, 1], got {_json_type(value)}")
    if not 0 <= value <= 1:
        raise RequestError(400, error, f"'{key}' must be a number in [0, 1], got {_shown(value)}")
    return float(value)


def _shown(value: Any) -> str:
    """A caller's value for an error detail, cut short: the detail must not echo a large input."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's int-to-str digit limit
        return _json_type(value)
    return text if len(text) <= _SHOWN_CHARACTERS else f"{text[:_SHOWN_CHARACTERS]}... ({_json_type(value)})"


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages that must not echo large inputs."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)
