"""Every kind of bad (and awkward but good) input, one table, through the Nuclio runtime and over HTTP.

Each case is the raw body a client could send, the status it must get and, for errors, the code the
README documents. A good request follows every refused one and must be answered correctly: a refusal
leaves the worker as it was. Good answers are checked against their own request: the synthetic
detector finds one person whose box is the whole (upright) image, so the COCO ``box`` is
[0, 0, width, height] and ``image_id`` comes back unchanged.

The function runs with ``ALPHAPOSE_MAX_PIXELS`` above Pillow's own decompression-bomb limit, so the
pixel cases also show that the configured limit is the one that decides.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from nuclio_harness import NuclioFunction, cvat_violations, server_env
from PIL import Image

from alphapose.cvat.spec import label_spec
from alphapose.pose.skeletons import COCO17
from tools.server.process import ServerProcess

MAX_PIXELS = 200_000_000  # above Pillow's refusal threshold of 178,956,970 pixels
MAX_BODY_SIZE = 100_000  # bytes, for the local server
DETAIL_LIMIT = 300  # characters: an error detail must never echo a large input back


def function_env(weights: Path) -> dict[str, str]:
    return {**server_env(weights), "ALPHAPOSE_MAX_PIXELS": str(MAX_PIXELS)}


# --- image files -------------------------------------------------------------------------------------


def picture(width: int, height: int) -> np.ndarray:
    """A smooth RGB picture with some structure."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width, 2), y * 255 // max(height, 2), (x * y) % 256], axis=2).astype(
        np.uint8
    )


def saved(image: Image.Image, file_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, file_format, **options)
    return buffer.getvalue()


def rgb(width: int, height: int) -> Image.Image:
    return Image.fromarray(picture(width, height))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_file(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: any header, any (possibly far too short) pixel data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims a width x height RGB canvas (a decompression bomb)."""
    return png_file(width, height, 8, 2, b"\x00" + b"\x00" * 3 * min(width, 64))


def png_rgb_16_bit(width: int, height: int) -> bytes:
    rows = b"".join(
        b"\x00" + b"".join(struct.pack(">HHH", 257 * x, 65535 - 257 * y, 30000) for x in range(width))
        for y in range(height)
    )
    return png_file(width, height, 16, 2, rows)


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF header (logical screen and one image) declaring a huge canvas, with no pixel data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + image + b"\x3b"


def palette_png(width: int, height: int) -> bytes:
    image = rgb(width, height).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 0
    return saved(image, "PNG")


def exif_rotated_jpeg(width: int, height: int) -> bytes:
    """Stored width x height, tagged "rotate 90 degrees clockwise": a viewer shows height x width."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return saved(rgb(width, height), "JPEG", exif=exif.tobytes())


def animated_gif(width: int, height: int) -> bytes:
    frames = [rgb(width, height), Image.fromarray(255 - picture(width, height))]
    return saved(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def corrupt_png_data(data: bytes) -> bytes:
    """The PNG with bytes in the middle of its pixel stream flipped (its CRC no longer matches)."""
    broken = bytearray(data)
    middle = len(broken) // 2
    broken[middle : middle + 16] = bytes(b ^ 0xFF for b in broken[middle : middle + 16])
    return bytes(broken)


def broken_header_crc(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(broken)


NOISE_JPEG = saved(Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)), "JPEG")
NOISE_PNG = saved(Image.fromarray(np.random.default_rng(2).integers(0, 255, (48, 64, 3), np.uint8)), "PNG")


# --- bodies ------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body(image: bytes | str | None = None, **fields: Any) -> bytes:
    """A JSON body; ``image`` bytes are base64-encoded, a str is sent as it is."""
    payload = dict(fields)
    if image is not None:
        payload["image"] = b64(image) if isinstance(image, bytes) else image
    return json.dumps(payload).encode("utf-8")


def coco(image: bytes | str, name: str, **fields: Any) -> bytes:
    return body(image, format="coco", image_id=name, **fields)


GOOD_PNG = b64(saved(rgb(40, 30), "PNG"))


@dataclass(frozen=True)
class Case:
    """One request and its documented answer."""

    name: str
    body: bytes
    status: int
    error: str | None = None  # the code of an error answer
    size: tuple[int, int] | None = None  # a COCO answer: one person with the box [0, 0, width, height]
    persons: int = 1
    content_type: str = "application/json"
    image_id: str | None = None  # the image_id a COCO answer echoes, when it is not the case's name
    detail: str = ""  # a part of the error detail


def good(name: str, image: bytes, size: tuple[int, int], **fields: Any) -> Case:
    return Case(name, coco(image, name, **fields), 200, size=size)


def bad(
    name: str, data: bytes, status: int, error: str, content_type: str = "application/json", detail: str = ""
) -> Case:
    return Case(name, data, status, error, content_type=content_type, detail=detail)


CASES: tuple[Case, ...] = (
    # the body itself
    bad("empty_body", b"", 400, "invalid_body"),
    bad("whitespace_body", b" \r\n\t ", 400, "invalid_body"),
    bad("json_list", b'[{"image": "AAAA"}]', 400, "invalid_body"),
    bad("json_number", b"42", 400, "invalid_body"),
    bad("json_string", b'"image"', 400, "invalid_body"),
    bad("json_null", b"null", 400, "invalid_body"),
    bad("not_json", b"image=abc&threshold=0.5", 400, "invalid_json"),
    bad("raw_png_instead_of_json", saved(rgb(8, 8), "PNG"), 400, "invalid_json", "image/png"),
    bad("truncated_json", b'{"image": "' + GOOD_PNG[:20].encode(), 400, "invalid_json"),
    bad("json_with_trailing_garbage", body(GOOD_PNG) + b" }", 400, "invalid_json"),
    bad("not_utf8", b'{"image": "\xff\xfe"}', 400, "invalid_json"),
    bad("nested_too_deep", b"[" * 50_000, 400, "invalid_json"),
    bad("truncated_json_as_text", b'{"image": ', 400, "invalid_json", "text/plain"),
    # the image field
    bad("image_missing", body(threshold=0.5), 400, "missing_image"),
    bad("image_null", b'{"image": null}', 400, "missing_image"),
    bad("image_zero_bytes", body(b""), 400, "missing_image"),
    bad("image_number", b'{"image": 42}', 400, "invalid_image_field"),
    bad("image_list", body(threshold=0.1, image=[GOOD_PNG]), 400, "invalid_image_field"),
    bad("image_object", body(image={"data": GOOD_PNG}), 400, "invalid_image_field"),
    bad("base64_bad_characters", body("not base64!"), 400, "invalid_base64"),
    bad("base64_impossible_length", body("abcde"), 400, "invalid_base64"),
    bad("base64_non_ascii", body("ÿØÿàAAAA"), 400, "invalid_base64"),
    bad("image_as_file_url", body("file:///etc/passwd"), 400, "invalid_base64"),
    bad("base64_of_text", body(b"just some text, not an image"), 400, "invalid_image"),
    bad("base64_of_a_path", body(b"/etc/passwd"), 400, "invalid_image"),
    bad("base64_of_noise", body(np.random.default_rng(3).bytes(2000)), 400, "invalid_image"),
    bad("data_url_of_text", body("data:image/png;base64," + b64(b"hello")), 400, "invalid_image"),
    bad("svg", body(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'), 400, "invalid_image"),
    bad("eps_would_run_ghostscript", body(saved(rgb(8, 8), "EPS")), 400, "invalid_image"),
    bad("jpeg_first_bytes_only", body(NOISE_JPEG[:20]), 400, "invalid_image"),
    bad("jpeg_truncated", body(cut(NOISE_JPEG, 0.5)), 400, "invalid_image"),
    bad("png_signature_only", body(NOISE_PNG[:8]), 400, "invalid_image"),
    bad("png_truncated", body(cut(NOISE_PNG, 0.5)), 400, "invalid_image"),
    bad("png_corrupt_pixel_data", body(corrupt_png_data(NOISE_PNG)), 400, "invalid_image"),
    bad("png_broken_header_crc", body(broken_header_crc(NOISE_PNG)), 400, "invalid_image"),
    bad("png_zero_width", body(png_file(0, 10, 8, 2, b"")), 400, "invalid_image"),
    bad(
        "png_claims_100000x100000",
        body(png_claiming(100_000, 100_000)),
        413,
        "image_too_large",
        # refused by Pillow, above twice its cap (raised to the limit at start-up), in our words
        detail=f"over {2 * MAX_PIXELS} pixels, more than the limit of {MAX_PIXELS} (ALPHAPOSE_MAX_PIXELS)",
    ),
    bad(
        "png_just_over_the_limit",
        body(png_claiming(20_000, MAX_PIXELS // 20_000 + 1)),
        413,
        "image_too_large",
        # decided by the configured limit, not by Pillow's lower one
        detail=f"20000x{MAX_PIXELS // 20_000 + 1} = {20_000 * (MAX_PIXELS // 20_000 + 1)} pixels, more than "
        f"the limit of {MAX_PIXELS}",
    ),
    bad("gif_claims_65535x65535", body(gif_claiming(65_535, 65_535)), 413, "image_too_large"),
    # the options
    bad("threshold_string", body(GOOD_PNG, threshold="0.5"), 400, "invalid_threshold"),
    bad("threshold_negative", body(GOOD_PNG, threshold=-0.1), 400, "invalid_threshold"),
    bad("threshold_above_one", body(GOOD_PNG, threshold=1.5), 400, "invalid_threshold"),
    bad("threshold_nan", body(GOOD_PNG, threshold=float("nan")), 400, "invalid_threshold"),
    bad("threshold_infinity", body(GOOD_PNG, threshold=float("inf")), 400, "invalid_threshold"),
    bad("threshold_boolean", body(GOOD_PNG, threshold=True), 400, "invalid_threshold"),
    bad("threshold_list", body(GOOD_PNG, threshold=[0.5]), 400, "invalid_threshold"),
    bad(
        "threshold_integer_beyond_float",
        b'{"image": "' + GOOD_PNG.encode() + b'", "threshold": 1' + b"0" * 400 + b"}",
        400,
        "invalid_threshold",
    ),
    bad(
        "keypoint_threshold_above_one",
        body(GOOD_PNG, keypoint_threshold=2),
        400,
        "invalid_keypoint_threshold",
    ),
    bad("format_unknown", body(GOOD_PNG, format="yolo"), 400, "invalid_format"),
    bad("format_wrong_case", body(GOOD_PNG, format="COCO"), 400, "invalid_format"),
    bad("format_huge_string", body(GOOD_PNG, format="x" * 30_000), 400, "invalid_format"),
    bad("format_path", body(GOOD_PNG, format="/etc/passwd"), 400, "invalid_format"),
    bad("image_id_object", body(GOOD_PNG, image_id={"path": "/etc/passwd"}), 400, "invalid_image_id"),
    bad("image_id_boolean", body(GOOD_PNG, image_id=False), 400, "invalid_image_id"),
    # awkward but good
    good("one_by_one_pixel", saved(rgb(1, 1), "PNG"), (1, 1)),
    good("one_pixel_high", saved(rgb(300, 1), "PNG"), (300, 1)),
    good(
        "grey_16_bit_png",
        saved(Image.fromarray(picture(37, 23)[..., 0].astype(np.uint16) * 257), "PNG"),
        (37, 23),
    ),
    good("rgb_16_bit_png", png_rgb_16_bit(21, 13), (21, 13)),
    good("cmyk_jpeg", saved(rgb(33, 27).convert("CMYK"), "JPEG"), (33, 27)),
    good("cmyk_tiff", saved(rgb(31, 19).convert("CMYK"), "TIFF"), (31, 19)),
    good("palette_png_with_transparency", palette_png(29, 41), (29, 41)),
    good("grey_png", saved(rgb(26, 34).convert("L"), "PNG"), (26, 34)),
    good("grey_alpha_png", saved(rgb(27, 35).convert("LA"), "PNG"), (27, 35)),
    good("rgba_png", saved(rgb(28, 36).convert("RGBA"), "PNG"), (28, 36)),
    good("bilevel_png", saved(rgb(30, 38).convert("1"), "PNG"), (30, 38)),
    good(
        "float_tiff",
        saved(Image.fromarray(picture(24, 18)[..., 1].astype(np.float32) / 255), "TIFF"),
        (24, 18),
    ),
    good("animated_gif", animated_gif(35, 25), (35, 25)),
    good("bmp", saved(rgb(36, 26), "BMP"), (36, 26)),
    good("webp", saved(rgb(38, 28), "WEBP"), (38, 28)),
    good("exif_rotated_jpeg", exif_rotated_jpeg(48, 32), (32, 48)),
    good("png_without_end_chunk", saved(rgb(39, 29), "PNG")[:-12], (39, 29)),
    Case(
        "data_url_with_line_breaks",
        coco(
            "data:image/png;base64," + base64.encodebytes(saved(rgb(42, 31), "PNG")).decode("ascii"),
            "data_url_with_line_breaks",
        ),
        200,
        size=(42, 31),
    ),
    good(
        "unknown_fields", saved(rgb(43, 32), "PNG"), (43, 32), quality="original", frame=3, extra={"a": [1]}
    ),
    good("null_thresholds", saved(rgb(44, 33), "PNG"), (44, 33), threshold=None, keypoint_threshold=None),
    Case(
        "path_like_image_id",
        body(saved(rgb(45, 34), "PNG"), format="coco", image_id="../../etc/passwd", path="/etc/shadow"),
        200,
        size=(45, 34),
        image_id="../../etc/passwd",
    ),
    Case("threshold_one_drops_everyone", body(GOOD_PNG, threshold=1), 200, persons=0),
    Case("cvat_format_as_text_plain", body(GOOD_PNG, threshold=0.5), 200, content_type="text/plain"),
)

BAD_CASES = tuple(case for case in CASES if case.status != 200)


def test_the_corpus_is_big_and_names_are_unique() -> None:
    assert len(BAD_CASES) >= 30 and len(CASES) - len(BAD_CASES) >= 15
    assert len({case.name for case in CASES}) == len(CASES)


# --- checks ------------------------------------------------------------------------------------------


def check_answer(case: Case, status: int, content_type: str, answer: Any) -> None:
    """The documented answer: status, JSON, error code and a short detail; or the right persons."""
    assert (status, content_type) == (case.status, "application/json"), answer
    if case.error is not None:
        assert answer["error"] == case.error
        assert isinstance(answer["detail"], str) and 0 < len(answer["detail"]) <= DETAIL_LIMIT
        assert set(answer) == {"error", "detail"}
        assert case.detail in answer["detail"]
        return
    assert isinstance(answer, list) and len(answer) == case.persons
    if case.size is not None:
        (entry,) = answer
        assert entry["box"] == pytest.approx([0, 0, *case.size])
        assert entry["image_id"] == (case.image_id or case.name)
    elif answer:
        assert cvat_violations(answer, label_spec(COCO17)) == []


def follow_up(index: int) -> tuple[bytes, tuple[int, int]]:
    """A good request with a size of its own, to show the worker still answers correctly."""
    size = (50 + index, 40 + index)
    return coco(saved(rgb(*size), "PNG"), f"follow-up-{index}"), size


def check_follow_up(answer: Any, index: int, size: tuple[int, int]) -> None:
    (entry,) = answer
    assert entry["image_id"] == f"follow-up-{index}"
    assert entry["box"] == pytest.approx([0, 0, *size])


# --- through the Nuclio runtime ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def function(weights_dir: Path) -> Iterator[NuclioFunction]:
    saved_limit = Image.MAX_IMAGE_PIXELS
    yield NuclioFunction(function_env(weights_dir))
    Image.MAX_IMAGE_PIXELS = saved_limit  # the function raised it to MAX_PIXELS for this process


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case_through_the_nuclio_runtime(function: NuclioFunction, case: Case) -> None:
    result = function.invoke(case.body, content_type=case.content_type)
    check_answer(case, result.status, result.content_type, result.json())
    if case.error is None:
        return
    (record,) = [r for r in function.log_records() if r["message"] == "Request refused"][-1:]
    assert (record["level"], record["with"]["error"]) == ("warning", case.error)
    index = CASES.index(case)
    request, size = follow_up(index)
    after = function.invoke(request)
    assert after.status == 200
    check_follow_up(after.json(), index, size)


# --- over HTTP, against the local server -------------------------------------------------------------


@pytest.fixture(scope="module")
def server(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("corpus-server") / "server.log"
    server = ServerProcess(
        function_env(weights_dir), log, "--workers", "1", "--max-body-size", str(MAX_BODY_SIZE)
    )
    assert server.url, server.log()
    yield server
    server.stop()


def post(server: ServerProcess, data: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(server.url, data=data, headers={"Content-Type": content_type}, timeout=120)


def test_every_bad_case_over_http(server: ServerProcess) -> None:
    for case in BAD_CASES:
        reply = post(server, case.body, case.content_type)
        check_answer(case, reply.status_code, reply.headers["Content-Type"], reply.json())
    request, size = follow_up(len(CASES))
    reply = post(server, request)
    assert reply.status_code == 200
    check_follow_up(reply.json(), len(CASES), size)


def test_body_over_the_size_limit_over_http(server: ServerProcess) -> None:
    too_big = coco(np.random.default_rng(4).bytes(MAX_BODY_SIZE), "too-big")
    reply = post(server, too_big)
    assert (reply.status_code, reply.json()["error"]) == (413, "body_too_large")
    assert str(MAX_BODY_SIZE) in reply.json()["detail"]
    request, size = follow_up(len(CASES) + 1)
    reply = post(server, request)
    assert reply.status_code == 200
    check_follow_up(reply.json(), len(CASES) + 1, size)


def raw_exchange(server: ServerProcess, request: bytes) -> bytes:
    """Send bytes on a fresh connection, half-close it, and read everything the server answers."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        (b"Transfer-Encoding: chunked\r\n", 411, "length_required"),
        (b"Content-Length: -5\r\n", 400, "invalid_body"),
        (b"Content-Length: lots\r\n", 400, "invalid_body"),
        (b"Content-Length: 2\r\nContent-Length: 7\r\n\r\n{}", 400, "invalid_body"),
        (b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}", 400, "invalid_body"),
    ],
    ids=["chunked", "negative_length", "non_numeric_length", "two_lengths", "length_and_chunked"],
)
def test_broken_content_length_over_http(
    server: ServerProcess, headers: bytes, status: int, error: str
) -> None:
    answer = raw_exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == str(status).encode()
    assert json.loads(payload)["error"] == error


def test_client_hanging_up_mid_body_gets_no_answer_and_the_server_keeps_serving(
    server: ServerProcess,
) -> None:
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
    assert raw_exchange(server, request) == b""
    request, size = follow_up(len(CASES) + 2)
    reply = post(server, request)
    assert reply.status_code == 200
    check_follow_up(reply.json(), len(CASES) + 2, size)
