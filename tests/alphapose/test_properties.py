"""Properties that must hold for every input, checked on generated ones (hypothesis).

The request parser: whatever arrives (any bytes, any JSON value, any mix of fields, damaged image
files), it returns a valid request or raises :class:`RequestError` with a 4xx status, a code and a
short detail; nothing else escapes, and valid options come back exactly as sent.

The geometry: a box anywhere in an image gives a crop box centred on it with the network's aspect
ratio, crops whose pixels come from exactly that region, and keypoints inside that crop box; the
whole pose stage keeps those promises on real (synthetic-weight) networks.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from alphapose.cvat.request import OUTPUT_FORMATS, RequestError, decode_image, parse_body, parse_request
from alphapose.pipeline import PosePipeline
from alphapose.pose.transforms import crop_persons, decode_heatmaps

MAX_PIXELS = 10_000
DETAIL_LIMIT = 500  # characters
INPUT_SIZE = (256, 192)  # the pose networks' crop (height, width)
HEATMAP_SIZE = (64, 48)
CHEAP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The end-to-end property runs the pose network on every example: 40 of them cover one and two boxes,
# boxes inside, across and outside the image, and tiny to large images (it is a slow case).
END_TO_END = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the request parser ------------------------------------------------------------------------------


def saved(image: Image.Image, file_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, file_format)
    return buffer.getvalue()


SMALL_RGB = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
IMAGE_FILES = tuple(
    saved(image, file_format)
    for image, file_format in [
        (Image.fromarray(SMALL_RGB), "PNG"),
        (Image.fromarray(SMALL_RGB), "JPEG"),
        (Image.fromarray(SMALL_RGB), "GIF"),
        (Image.fromarray(SMALL_RGB), "BMP"),
        (Image.fromarray(SMALL_RGB), "TIFF"),
        (Image.fromarray(SMALL_RGB), "WEBP"),
        (Image.fromarray(SMALL_RGB).convert("CMYK"), "TIFF"),
        (Image.fromarray(SMALL_RGB[..., 0].astype(np.uint16) * 250), "PNG"),
    ]
)
SMALL_PNG_B64 = base64.b64encode(IMAGE_FILES[0]).decode("ascii")


@st.composite
def damaged_image_files(draw: st.DrawFn) -> bytes:
    """A small valid image file with bytes overwritten, cut off or inserted."""
    data = bytearray(draw(st.sampled_from(IMAGE_FILES)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
image_fields = st.one_of(
    json_values,
    st.just(SMALL_PNG_B64),
    damaged_image_files().map(lambda data: base64.b64encode(data).decode("ascii")),
    st.binary(max_size=48).map(lambda data: base64.b64encode(data).decode("ascii")),
    st.text(alphabet="ABCDabcd0123+/=-_ \n:;,", max_size=40),
)
numbers = st.one_of(json_values, st.floats(-0.5, 1.5), st.sampled_from([0, 1, -1, 2]))
requests_like = st.fixed_dictionaries(
    {},
    optional={
        "image": image_fields,
        "threshold": numbers,
        "keypoint_threshold": numbers,
        "format": st.one_of(st.sampled_from([*OUTPUT_FORMATS, "COCO", ""]), json_values),
        "image_id": json_values,
        "extra": json_values,
    },
)


def assert_well_formed(error: RequestError) -> None:
    assert error.status in (400, 413)
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", error.error)
    assert isinstance(error.detail, str) and 0 < len(error.detail) <= DETAIL_LIMIT
    assert error.payload() == {"error": error.error, "detail": error.detail}


def parse_anything(body: Any, decoded: bool = False) -> None:
    """Parse ``body``: a valid request, or a well-formed RequestError and nothing else."""
    try:
        request = parse_request(body, max_pixels=MAX_PIXELS, decoded=decoded)
    except RequestError as error:
        assert_well_formed(error)
        return
    height, width, channels = request.image.shape
    assert request.image.dtype == np.uint8 and channels == 3 and 0 < width * height <= MAX_PIXELS
    assert 0.0 <= request.threshold <= 1.0
    assert request.keypoint_threshold is None or 0.0 <= request.keypoint_threshold <= 1.0
    assert request.output_format in OUTPUT_FORMATS
    assert isinstance(request.image_id, int | str) and not isinstance(request.image_id, bool)


@CHEAP
@given(st.binary(max_size=256))
def test_any_bytes_give_a_request_or_a_request_error(body: bytes) -> None:
    parse_anything(body)


@CHEAP
@given(json_values)
def test_any_json_value_gives_a_request_or_a_request_error(value: Any) -> None:
    parse_anything(value, decoded=True)  # as Nuclio hands over an application/json body
    parse_anything(json.dumps(value).encode("utf-8"))  # as bytes, for any other content type


@CHEAP
@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@given(requests_like, st.sampled_from(["decoded", "bytes", "text"]))
def test_any_mix_of_fields_gives_a_request_or_a_request_error(payload: dict[str, Any], form: str) -> None:
    if form == "decoded":
        parse_anything(payload, decoded=True)
    else:
        text = json.dumps(payload)
        parse_anything(text.encode("utf-8") if form == "bytes" else text)


@CHEAP
@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@given(damaged_image_files())
def test_damaged_image_files_decode_or_give_a_request_error(data: bytes) -> None:
    try:
        image = decode_image(data, max_pixels=MAX_PIXELS)
    except RequestError as error:
        assert_well_formed(error)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


unit_numbers = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0, 1]))


@CHEAP
@given(
    threshold=unit_numbers,
    keypoint_threshold=st.one_of(st.none(), unit_numbers),
    output_format=st.sampled_from(OUTPUT_FORMATS),
    image_id=st.one_of(st.integers(-(2**63), 2**63), st.text(max_size=30)),
    decoded=st.booleans(),
)
def test_valid_requests_round_trip_their_options(
    threshold: float, keypoint_threshold: float | None, output_format: str, image_id: int | str, decoded: bool
) -> None:
    payload = {
        "image": SMALL_PNG_B64,
        "threshold": threshold,
        "keypoint_threshold": keypoint_threshold,
        "format": output_format,
        "image_id": image_id,
    }
    body = payload if decoded else json.dumps(payload).encode("utf-8")
    request = parse_request(body, max_pixels=MAX_PIXELS, decoded=decoded)
    assert type(request.threshold) is float and request.threshold == threshold
    if keypoint_threshold is None:
        assert request.keypoint_threshold is None
    else:
        assert type(request.keypoint_threshold) is float and request.keypoint_threshold == keypoint_threshold
    assert (request.output_format, request.image_id) == (output_format, image_id)
    np.testing.assert_array_equal(request.image, SMALL_RGB)


@CHEAP
@given(st.text(max_size=64))
def test_any_text_body_gives_a_request_or_a_request_error(text: str) -> None:
    parse_anything(text)
    try:
        parse_body(text, decoded=True)  # a JSON string Nuclio decoded: never parsed again
    except RequestError as error:
        assert (error.status, error.error) == (400, "invalid_body")
    else:
        pytest.fail("a string body was accepted as an object")


# --- the geometry ------------------------------------------------------------------------------------


@st.composite
def images_with_boxes(
    draw: st.DrawFn, max_side: int = 400, max_boxes: int = 3
) -> tuple[int, int, np.ndarray]:
    """An image size and 1 to ``max_boxes`` boxes (x1, y1, x2, y2) inside it, each at least 1 x 1 pixel."""
    width, height = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    boxes = []
    for _ in range(draw(st.integers(1, max_boxes))):
        x1 = draw(st.floats(0, width - 1))
        y1 = draw(st.floats(0, height - 1))
        boxes.append([x1, y1, draw(st.floats(x1 + 1, width)), draw(st.floats(y1 + 1, height))])
    return width, height, np.array(boxes, dtype=np.float32)


def check_crop_boxes(boxes: np.ndarray, crop_boxes: np.ndarray) -> None:
    """Centred on the box, 3:4 (width:height), 1.25 times the box in its limiting dimension."""
    in_h, in_w = INPUT_SIZE
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    crop_w, crop_h = crop_boxes[:, 2] - crop_boxes[:, 0], crop_boxes[:, 3] - crop_boxes[:, 1]
    np.testing.assert_allclose(
        (crop_boxes[:, :2] + crop_boxes[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2, rtol=1e-5, atol=1e-3
    )
    np.testing.assert_allclose(crop_w / crop_h, in_w / in_h, rtol=1e-4)
    np.testing.assert_allclose(np.maximum(box_w, box_h * in_w / in_h) * 1.25, crop_w, rtol=1e-5)


@CHEAP
@given(images_with_boxes(), st.integers(0, 2**32 - 1))
def test_keypoints_of_any_heatmaps_fall_inside_the_crop_box(
    case: tuple[int, int, np.ndarray], seed: int
) -> None:
    width, height, boxes = case
    image = np.zeros((height, width, 3), dtype=np.uint8)
    _, crop_boxes = crop_persons(image, boxes, INPUT_SIZE)
    check_crop_boxes(boxes, crop_boxes)
    rng = np.random.default_rng(seed)
    heatmaps = rng.normal(0.2, 0.3, (len(boxes), 17, *HEATMAP_SIZE)).astype(np.float32)
    keypoints, scores = decode_heatmaps(heatmaps, crop_boxes)
    assert keypoints.shape == (len(boxes), 17, 2) and np.isfinite(keypoints).all()
    np.testing.assert_allclose(scores, heatmaps.reshape(len(boxes), 17, -1).max(axis=2))
    tolerance = 1e-4 * np.abs(crop_boxes).max() + 1e-3
    assert (keypoints >= crop_boxes[:, None, :2] - tolerance).all()
    assert (keypoints <= crop_boxes[:, None, 2:] + tolerance).all()


@CHEAP
@given(
    images_with_boxes(max_boxes=1), st.integers(0, HEATMAP_SIZE[0] - 1), st.integers(0, HEATMAP_SIZE[1] - 1)
)
def test_a_single_heatmap_peak_maps_to_its_cell_in_the_crop_box(
    case: tuple[int, int, np.ndarray], row: int, column: int
) -> None:
    """With nothing around the peak there is no sub-cell shift: cell (row, column) of the h x w heatmap is the
    crop box's point (x1 + column * width / w, y1 + row * height / h)."""
    width, height, boxes = case
    _, crop_boxes = crop_persons(np.zeros((height, width, 3), dtype=np.uint8), boxes, INPUT_SIZE)
    heatmaps = np.zeros((1, 1, *HEATMAP_SIZE), dtype=np.float32)
    heatmaps[0, 0, row, column] = 0.7
    keypoints, scores = decode_heatmaps(heatmaps, crop_boxes)
    x1, y1, x2, y2 = crop_boxes[0].astype(np.float64)
    expected = [x1 + column * (x2 - x1) / HEATMAP_SIZE[1], y1 + row * (y2 - y1) / HEATMAP_SIZE[0]]
    np.testing.assert_allclose(keypoints[0, 0], expected, rtol=1e-5, atol=1e-3 + 1e-5 * (x2 - x1))
    assert scores[0, 0] == pytest.approx(0.7)


@CHEAP
@given(images_with_boxes(max_side=200, max_boxes=1), st.integers(2, 255))
def test_crops_sample_exactly_the_crop_box(case: tuple[int, int, np.ndarray], value: int) -> None:
    """On an image of one grey value, a crop pixel whose source point lies inside the image has that value
    and one whose source lies a pixel outside is the zero border (both after normalisation)."""
    width, height, boxes = case
    image = np.full((height, width, 3), value, dtype=np.uint8)
    batch, crop_boxes = crop_persons(image, boxes, INPUT_SIZE)
    in_h, in_w = INPUT_SIZE
    x1, y1, x2, y2 = crop_boxes[0].astype(np.float64)
    v, u = np.mgrid[0:in_h, 0:in_w]
    source_x = (x1 + x2) / 2 + (u - in_w / 2) * (x2 - x1) / in_w
    source_y = (y1 + y2) / 2 + (v - in_h / 2) * (y2 - y1) / in_h
    margin = 0.1  # the warp rounds source points to 1/32 pixel
    inside = (
        (source_x >= margin)
        & (source_x <= width - 1 - margin)
        & (source_y >= margin)
        & (source_y <= height - 1 - margin)
    )
    outside = (
        (source_x < -1 - margin)
        | (source_x > width + margin)
        | (source_y < -1 - margin)
        | (source_y > height + margin)
    )
    # R, G, B means of the official SimpleTransform.test_transform (simple_transform.py), written out
    means = np.array([0.406, 0.457, 0.480], dtype=np.float32)[:, None]
    crop = batch[0].numpy().reshape(3, -1)
    grey, border = crop[:, inside.ravel()], crop[:, outside.ravel()]
    np.testing.assert_allclose(grey, np.broadcast_to(np.float32(value / 255) - means, grey.shape), atol=1e-6)
    np.testing.assert_allclose(border, np.broadcast_to(-means, border.shape), atol=1e-6)
    if min(width, height) >= 3:
        assert inside.any()  # the check above is not vacuous


@pytest.fixture(scope="module")
def pipeline(weights_dir: Path) -> PosePipeline:
    return PosePipeline.from_weights_dir(weights_dir, device="cpu", detector_size=160)


@pytest.mark.slow
@END_TO_END
@given(images_with_boxes(max_side=160, max_boxes=2), st.integers(0, 2**32 - 1))
def test_the_pose_stage_keeps_every_person_in_its_crop_box(
    pipeline: PosePipeline, case: tuple[int, int, np.ndarray], seed: int
) -> None:
    width, height, boxes = case
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    box_scores = np.linspace(0.9, 0.5, len(boxes), dtype=np.float32)
    poses = pipeline.estimate(image, boxes, box_scores)
    assert 1 <= len(poses) <= len(boxes)
    _, crop_boxes = crop_persons(image, boxes, INPUT_SIZE)
    for pose in poses:
        # the box it was picked from; identical boxes are told apart by their scores
        candidates = [i for i, box in enumerate(boxes) if np.array_equal(box, pose.box)]
        (index,) = [i for i in candidates if pose.box_score == pytest.approx(box_scores[i])]
        assert pose.keypoints.shape == (17, 2) and np.isfinite(pose.keypoints).all()
        assert np.isfinite(pose.keypoint_scores).all()
        tolerance = 1e-4 * np.abs(crop_boxes[index]).max() + 1e-3
        assert (pose.keypoints >= crop_boxes[index, :2] - tolerance).all()
        assert (pose.keypoints <= crop_boxes[index, 2:] + tolerance).all()
        scores = pose.keypoint_scores.astype(np.float64)
        assert pose.score == pytest.approx(scores.mean() + pose.box_score + 1.25 * scores.max(), rel=1e-5)
