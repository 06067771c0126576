"""Request parsing: every body form Nuclio can deliver, every field rule, every image mode."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from alphapose.cvat.request import (
    RequestError,
    decode_base64,
    decode_base64_lenient,
    decode_image,
    parse_body,
    parse_request,
)
from alphapose.images.decode import decode_jpeg_with_opencv

MAX_PIXELS = 10_000


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring a canvas of any size, holding (far too little) pixel data for one row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x80" * 3 * width)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def refused(call, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as info:
        call(*args, **kwargs)
    return info.value


SMALL_RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 3
SMALL_PNG = png_bytes(Image.fromarray(SMALL_RGB))


def parse(payload: dict, **kwargs) -> object:
    return parse_request(payload, max_pixels=MAX_PIXELS, **kwargs)


# --- body forms --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"image": "x"},
        b'{"image": "x"}',
        bytearray(b'{"image": "x"}'),
        memoryview(b'{"image": "x"}'),
        '{"image": "x"}',
        '\n  {"image": "x"}  \n',
        '{"image": "x"}'.encode("utf-16"),  # json.loads detects UTF-16/32 from the byte pattern
    ],
)
def test_parse_body_accepts_every_form_nuclio_delivers(body: object) -> None:
    assert parse_body(body) == {"image": "x"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"image": ', "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"\x80abc", "invalid_json"),  # not UTF-8
        ("[" * 100_000, "invalid_json"),  # nesting deeper than the parser's recursion limit
        (b"", "invalid_body"),
        ("   ", "invalid_body"),
        (None, "invalid_body"),
        (b'["image"]', "invalid_body"),
        ([{"image": "x"}], "invalid_body"),
        (b'"image"', "invalid_body"),
        (b"42", "invalid_body"),
    ],
)
def test_parse_body_refuses_what_is_not_a_json_object(body: object, error: str) -> None:
    exc = refused(parse_body, body)
    assert (exc.status, exc.error) == (400, error)
    assert exc.payload() == {"error": error, "detail": exc.detail}


# --- base64 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b64(SMALL_PNG),
        "data:image/png;base64," + b64(SMALL_PNG),
        "DATA:image/png;base64," + b64(SMALL_PNG),
        base64.encodebytes(SMALL_PNG).decode("ascii"),  # MIME style: a newline every 76 characters
        "  \r\n" + b64(SMALL_PNG) + "\n\t ",
        b64(SMALL_PNG).rstrip("="),
        base64.urlsafe_b64encode(SMALL_PNG).decode("ascii"),
    ],
)
def test_base64_tolerates_prefix_whitespace_padding_and_urlsafe(text: str) -> None:
    assert decode_base64(text) == SMALL_PNG


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, "missing_image"),
        ("", "missing_image"),
        (" \n ", "missing_image"),
        ("====", "invalid_base64"),
        (12, "invalid_image_field"),
        (["abc"], "invalid_image_field"),
        ({"data": "abc"}, "invalid_image_field"),
        ("not base64!", "invalid_base64"),
        ("abcde", "invalid_base64"),  # 5 characters can never be valid
        ("ab=cd===", "invalid_base64"),
        ("\u00e9t\u00e9", "invalid_base64"),  # non-ASCII text
    ],
)
def test_base64_errors(value: object, error: str) -> None:
    exc = refused(decode_base64, value)
    assert (exc.status, exc.error) == (400, error)


# --- fields ------------------------------------------------------------------------------------------


def test_defaults_and_unknown_fields() -> None:
    request = parse({"image": b64(SMALL_PNG), "quality": "original", "type": "annotate_frame"})
    assert request.threshold == 0.0
    assert request.keypoint_threshold is None  # the predictor's default applies
    assert request.output_format == "cvat"
    assert request.image_id == 0
    np.testing.assert_array_equal(request.image, SMALL_RGB)


def test_explicit_fields() -> None:
    request = parse(
        {
            "image": b64(SMALL_PNG),
            "threshold": 1,
            "keypoint_threshold": 0.25,
            "format": "coco",
            "image_id": "a.jpg",
        }
    )
    assert (request.threshold, request.keypoint_threshold) == (1.0, 0.25)
    assert isinstance(request.threshold, float)
    assert (request.output_format, request.image_id) == ("coco", "a.jpg")


def test_null_thresholds_mean_not_given() -> None:
    request = parse({"image": b64(SMALL_PNG), "threshold": None, "keypoint_threshold": None})
    assert (request.threshold, request.keypoint_threshold) == (0.0, None)


@pytest.mark.parametrize("key", ["threshold", "keypoint_threshold"])
@pytest.mark.parametrize("value", [True, False, "0.5", -0.01, 1.0001, float("nan"), float("inf"), [0.5], {}])
def test_threshold_must_be_a_number_in_unit_interval(key: str, value: object) -> None:
    exc = refused(parse, {"image": b64(SMALL_PNG), key: value})
    assert (exc.status, exc.error) == (400, f"invalid_{key}")
    assert key in exc.detail


def test_json_nan_threshold_is_refused() -> None:
    exc = refused(parse_request, b'{"image": "AAAA", "threshold": NaN}', max_pixels=10)
    assert exc.error == "invalid_threshold"


@pytest.mark.parametrize("value", ["CVAT", "json", "", None, 1])
def test_format_must_be_known(value: object) -> None:
    assert refused(parse, {"image": b64(SMALL_PNG), "format": value}).error == "invalid_format"


@pytest.mark.parametrize("value", [True, 1.5, None, [1], {"id": 1}])
def test_image_id_must_be_int_or_str(value: object) -> None:
    assert refused(parse, {"image": b64(SMALL_PNG), "image_id": value}).error == "invalid_image_id"


def test_field_errors_come_before_image_decoding() -> None:
    assert refused(parse, {"image": "not base64!", "threshold": 2}).error == "invalid_threshold"


# --- image decoding ----------------------------------------------------------------------------------


def test_not_an_image() -> None:
    exc = refused(decode_image, b"just some bytes", max_pixels=MAX_PIXELS)
    assert (exc.status, exc.error) == (400, "invalid_image")


def test_truncated_image() -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    data = png_bytes(noisy)
    exc = refused(decode_image, data[: len(data) // 2], max_pixels=MAX_PIXELS)
    assert (exc.status, exc.error) == (400, "invalid_image")


def test_pixel_limit_is_checked_on_the_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    exc = refused(decode_image, png_header_only(101, 100), max_pixels=MAX_PIXELS)
    assert (exc.status, exc.error) == (413, "image_too_large")
    assert "10100" in exc.detail


def test_decompression_bomb_beyond_pillows_own_limit_is_413_naming_our_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pillow refuses, before telling the size, above twice its cap, which start-up raises to the limit (as
    alphapose.images.decode.allow_large_images does): the detail is ours, naming the limit and its setting."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", MAX_PIXELS)
    exc = refused(decode_image, png_header_only(30_000, 30_000), max_pixels=MAX_PIXELS)
    assert (exc.status, exc.error) == (413, "image_too_large")
    assert (
        f"over {2 * MAX_PIXELS} pixels, more than the limit of {MAX_PIXELS} (ALPHAPOSE_MAX_PIXELS)"
        in exc.detail
    )
    assert "send a smaller image or raise the limit" in exc.detail
    assert "bomb DOS" not in exc.detail


def test_an_image_under_our_limit_but_over_pillows_cap_says_how_to_raise_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library caller who never raised Pillow's cap: raising our limit would not help, raising the cap
    does."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2000 pixels
    exc = refused(decode_image, png_header_only(50, 50), max_pixels=MAX_PIXELS)
    assert (exc.status, exc.error) == (413, "image_too_large")
    assert "over 2000 pixels" in exc.detail and f"limit of {MAX_PIXELS} (ALPHAPOSE_MAX_PIXELS)" in exc.detail
    assert f"alphapose.images.decode.allow_large_images({MAX_PIXELS})" in exc.detail
    assert "raise the limit" not in exc.detail


def test_image_at_the_pixel_limit_is_accepted() -> None:
    image = decode_image(png_bytes(Image.new("RGB", (100, 100), (1, 2, 3))), max_pixels=MAX_PIXELS)
    assert image.shape == (100, 100, 3)
    assert image.dtype == np.uint8


def test_exif_orientation_is_applied() -> None:
    # Stored 32 wide x 16 high, left half red; orientation 6 displays it turned 90 degrees clockwise,
    # so the viewer sees 16 wide x 32 high with the red half on top.
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    image = decode_image(buffer.getvalue(), max_pixels=MAX_PIXELS)
    assert image.shape == (32, 16, 3)
    assert image[4, 8, 0] > 200 and image[4, 8, 2] < 50
    assert image[28, 8, 2] > 200 and image[28, 8, 0] < 50


def jpeg_bytes(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def pillow_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


NOISE = np.random.default_rng(3).integers(0, 255, (37, 53, 3), dtype=np.uint8)  # odd sizes: partial MCUs


@pytest.mark.parametrize(
    ("pixels", "options"),
    [
        (NOISE, {"quality": 95}),
        (NOISE, {"quality": 30, "subsampling": "4:2:2"}),
        (NOISE, {"subsampling": "4:4:4"}),
        (NOISE, {"progressive": True, "optimize": True}),
        (NOISE[..., 1], {}),  # greyscale
    ],
)
def test_jpeg_fast_path_gives_pillows_pixels(
    pixels: np.ndarray, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = jpeg_bytes(pixels, **options)
    expected = pillow_pixels(data)

    def no_pillow_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("Pillow decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pillow_decoding)
    image = decode_image(data, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(image, expected)
    assert image.dtype == np.uint8 and image.flags.writeable


def test_jpeg_fast_path_is_not_taken_where_pillow_must_decode() -> None:
    plain = jpeg_bytes(NOISE)
    exif = Image.Exif()
    exif[0x0112] = 3
    rotated = io.BytesIO()
    Image.fromarray(NOISE).save(rotated, "JPEG", exif=exif.tobytes())
    cmyk = io.BytesIO()
    Image.fromarray(NOISE).convert("CMYK").save(cmyk, "JPEG")
    for data in (
        rotated.getvalue(),
        cmyk.getvalue(),
        plain[:-200],
        plain + b"trailer",
        png_bytes(Image.fromarray(NOISE)),
    ):
        assert decode_jpeg_with_opencv(data, Image.open(io.BytesIO(data))) is None
    assert decode_jpeg_with_opencv(plain, Image.open(io.BytesIO(plain))) is not None


def test_truncated_jpeg_is_refused() -> None:
    exc = refused(decode_image, jpeg_bytes(NOISE)[:-200], max_pixels=MAX_PIXELS)
    assert (exc.status, exc.error) == (400, "invalid_image")


def test_complete_jpegs_with_corrupt_data_decode_as_opencv_decodes_them() -> None:
    # Complete files with damaged image data: every one OpenCV decodes comes back as OpenCV's pixels (what
    # cv2.imread gives the reference pipeline, and what a browser shows), including some that Pillow
    # refuses as a "broken data stream"; the rest are refused with 400 invalid_image.
    plain = jpeg_bytes(NOISE)
    scan = plain.index(b"\xff\xda") + 14  # the entropy-coded data after the start-of-scan header
    rng = np.random.default_rng(11)
    pillow_refused = 0
    for _ in range(400):
        damaged = np.frombuffer(plain, np.uint8).copy()
        damaged[rng.integers(scan, len(plain) - 2, 3)] = rng.integers(0, 256, 3)
        data = damaged.tobytes()
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        try:
            image = decode_image(data, max_pixels=MAX_PIXELS)
        except RequestError as exc:
            assert (exc.status, exc.error) == (400, "invalid_image")
            continue
        if expected is not None and expected.shape == image.shape:
            np.testing.assert_array_equal(image, expected)
            try:
                pillow_pixels(data)
            except OSError:
                pillow_refused += 1
    assert pillow_refused > 0


def test_strict_and_lenient_base64_agree() -> None:
    text = b64(jpeg_bytes(NOISE))
    assert decode_base64(text) == decode_base64_lenient(text) == base64.b64decode(text)


def decode(image: Image.Image) -> np.ndarray:
    """Through a file: PNG where it can hold the mode, TIFF (CMYK, 32-bit, float) otherwise."""
    buffer = io.BytesIO()
    image.save(buffer, "TIFF" if image.mode in ("CMYK", "I", "F") else "PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == image.mode
    return decode_image(buffer.getvalue(), max_pixels=MAX_PIXELS)


def test_rgba_keeps_colour_and_drops_alpha() -> None:
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128], [70, 80, 90, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(decode(Image.fromarray(rgba, "RGBA")), rgba[..., :3])


def test_grey_and_grey_alpha_are_replicated() -> None:
    grey = np.array([[0, 100, 255]], dtype=np.uint8)
    expected = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_array_equal(decode(Image.fromarray(grey, "L")), expected)
    la = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(np.full_like(grey, 7))])
    np.testing.assert_array_equal(decode(la), expected)


def test_palette_colours() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 128, 255] + [0] * 762)
    palette.putdata([1, 0])
    palette.info["transparency"] = 0
    np.testing.assert_array_equal(decode(palette), [[[0, 128, 255], [255, 0, 0]]])


def test_cmyk() -> None:
    cmyk = Image.new("CMYK", (1, 1), (255, 0, 0, 0))  # full cyan
    np.testing.assert_array_equal(decode(cmyk), [[[0, 255, 255]]])


def test_bilevel() -> None:
    bilevel = Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1")
    np.testing.assert_array_equal(decode(bilevel)[..., 0], [[0, 255]])


def test_16_bit_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    np.testing.assert_array_equal(decode(image)[..., 1], [[0, 100, 255, 4]])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 100, 255], [0, 100, 255]),  # 8-bit data in a 32-bit image is kept as is
        ([0, 257 * 3, 65535], [0, 3, 255]),  # 16-bit data
        ([0, 100_000, 200_000], [0, 128, 255]),  # beyond 16 bits: the maximum is white
        ([-100, 0, 155], [0, 100, 255]),  # negative data: stretched from its minimum to its maximum
    ],
)
def test_32_bit_integer_is_scaled(values: list[int], expected: list[int]) -> None:
    image = Image.fromarray(np.array([values], dtype=np.int32), "I")
    assert image.mode == "I"
    np.testing.assert_array_equal(decode(image)[..., 0], [expected])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0], [0, 128, 255]),
        ([0.0, 127.0, 255.0], [0, 127, 255]),
        ([0.0, float("nan"), 1.0], [0, 0, 255]),
    ],
)
def test_float_is_scaled(values: list[float], expected: list[int]) -> None:
    image = Image.fromarray(np.array([values], dtype=np.float32), "F")
    np.testing.assert_array_equal(decode(image)[..., 2], [expected])


def test_request_with_a_json_bytes_body_decodes_the_image() -> None:
    body = json.dumps({"image": "data:image/png;base64," + b64(SMALL_PNG)}).encode()
    request = parse_request(body, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(request.image, SMALL_RGB)
    assert request.keypoint_threshold is None


def test_a_number_over_the_digit_limit_is_told_as_the_callers_not_as_python_advice() -> None:
    exc = refused(parse_body, b'{"image": "x", "threshold": ' + b"9" * 5000 + b"}")
    assert exc.error == "invalid_json" and "more than 4300 digits" in exc.detail
    assert "sys." not in exc.detail


@pytest.mark.parametrize("body", [SMALL_PNG, b'{"image": '], ids=["raw image file", "cut short"])
def test_a_body_that_is_no_json_says_what_to_send(body: bytes) -> None:
    """A raw image file posted as the body (``curl --data-binary @frame.png``) was answered with the UTF-8
    codec's complaint about byte 0x89 alone, a broken JSON text with the parser's alone."""
    exc = refused(parse_body, body)
    assert exc.status == 400 and exc.error == "invalid_json"
    assert "codec" not in exc.detail
    assert exc.detail.endswith("; send a JSON object whose 'image' is the image file in base64"), exc.detail
