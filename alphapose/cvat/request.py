"""Parsing and validation of the function's request body, up to an RGB image array.

CVAT posts ``{"image": <base64 of the frame file>, "threshold": <float, only when non-zero>}`` with
``Content-Type: application/json``; Nuclio hands the handler a dict for exactly that content type and raw
bytes for any other (``nuctl invoke`` without ``-c``, ``application/json; charset=utf-8``). Everything a
caller can get wrong surfaces as one :class:`RequestError` that carries the HTTP status to answer with.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from alphapose.cvat.errors import RequestError
from alphapose.cvat.formats import OUTPUT_FORMATS
from alphapose.errors import ImageError
from alphapose.images import decode

_DATA_URL_PREFIX = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_SHOWN_CHARACTERS = 40  # longest value quoted back in an error detail


@dataclass(frozen=True)
class PoseRequest:
    """A validated request: the decoded image and the answer options."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied
    threshold: float  # persons whose detector score is below this are dropped
    keypoint_threshold: float | None  # keypoints below it are outside; None: the predictor's default
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
            raise RequestError(
                400, "invalid_json", f"the body is not valid JSON: {_json_problem(exc)}"
            ) from None
    if not isinstance(body, dict):
        raise RequestError(
            400, "invalid_body", f"expected a JSON object with 'image', got {_json_type(body)}"
        )
    return body


def parse_request(body: Any, *, max_pixels: int, decoded: bool = False) -> PoseRequest:
    """Validate every field, then decode the image (cheap checks first).

    A field the request leaves out stays None where the predictor has the default (the keypoint
    threshold: the setting's, else the preset's per keypoint); ``decoded`` is :func:`parse_body`'s.
    Unknown fields are ignored so that newer callers keep working.
    """
    data = parse_body(body, decoded=decoded)
    threshold = _probability(data, "threshold", "invalid_threshold", default=0.0)
    keypoint_threshold = _probability(data, "keypoint_threshold", "invalid_keypoint_threshold", default=None)
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
    """The image file's pixels (:func:`alphapose.images.decode.decode_image`); a file the library
    refuses is a 413 when it is too large, else a 400."""
    try:
        return decode.decode_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        if exc.too_large:
            raise RequestError(413, "image_too_large", str(exc)) from None
        raise RequestError(400, "invalid_image", str(exc)) from None


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


def _json_problem(exc: Exception) -> str:
    """The parser's complaint, except that Python's integer digit limit is told as what the caller sent
    (its own message advises a call of the server's Python), and bytes that are no UTF-8 as such; with
    what to send."""
    if type(exc) is ValueError and "int_max_str_digits" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits; send numbers of ordinary size"
    if isinstance(exc, UnicodeDecodeError):  # the codec's own words say nothing to a caller
        problem = (
            f"it is not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}: a raw image file?)"
        )
    else:
        problem = str(exc)
    return f"{problem}; send a JSON object whose 'image' is the image file in base64"


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
