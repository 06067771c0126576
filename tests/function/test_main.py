"""main.py driven as Nuclio drives it, on the real pipeline with synthetic official-format weights.

The synthetic detector finds exactly one person whose box is the whole image, with objectness 0.9.
It runs at a 160-pixel input here: the answer's structure does not depend on it and it keeps the
detector's share of each request small on a CPU.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import nuclio_sdk
import numpy as np
import pytest
import torch
from nuclio_harness import NuclioFunction, cvat_violations
from PIL import Image

import main
from alphapose.cvat.errors import ConfigError
from alphapose.cvat.predictor import Predictor
from alphapose.cvat.settings import Config
from alphapose.cvat.spec import label_spec
from alphapose.errors import WeightsError
from alphapose.options import PipelineOptions
from alphapose.pose.skeletons import COCO17, HALPE26

BOX_SCORE = 0.9  # the synthetic detector's objectness
WIDTH, HEIGHT = 64, 96
DETECTOR_SIZE = "160"


def scene(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A smooth colour gradient with a block in the middle, RGB uint8."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack(
        [x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (width + height)], axis=2
    )
    image[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = (200, 180, 160)
    return image.astype(np.uint8)


def encoded(image: np.ndarray, file_format: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, file_format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


IMAGE_B64 = encoded(scene())


def function_env(weights: Path, **extra: str) -> dict[str, str]:
    return {
        "ALPHAPOSE_WEIGHTS_DIR": str(weights),
        "ALPHAPOSE_DETECTOR_SIZE": DETECTOR_SIZE,
        "ALPHAPOSE_DEVICE": "cpu",
        **extra,
    }


@pytest.fixture(scope="module")
def coco(weights_dir: Path) -> NuclioFunction:
    return NuclioFunction(function_env(weights_dir))


@pytest.fixture(scope="module")
def halpe(weights_dir: Path) -> NuclioFunction:
    return NuclioFunction(
        function_env(weights_dir, ALPHAPOSE_PRESET="fastpose_res50_halpe26", ALPHAPOSE_MAX_PIXELS="7000")
    )


@pytest.fixture(scope="module")
def reference(coco: NuclioFunction) -> list[dict]:
    """The answer to CVAT's own request for the test image."""
    result = coco.post_json({"image": IMAGE_B64})
    assert (result.status, result.content_type) == (200, "application/json")
    return result.json()


def assert_error(result, status: int, error: str) -> dict:
    assert result.status == status
    assert result.content_type == "application/json"
    payload = result.json()
    assert payload["error"] == error
    assert isinstance(payload["detail"], str) and payload["detail"]
    return payload


# --- start-up ----------------------------------------------------------------------------------------


def test_init_context_logs_what_it_loaded(coco: NuclioFunction, weights_dir: Path) -> None:
    (record,) = [r for r in coco.log_records() if r["message"] == "AlphaPose model loaded"]
    assert record["level"] == "info"
    details = record["with"]
    assert details["preset"] == "fastpose_res50_coco"
    assert details["detector"] == "yolov3-spp"
    # The session's weights are synthetic: the log says so per file, and warns once.
    assert details["weights"] == {
        str(weights_dir / "yolov3-spp.weights"): "synthetic",
        str(weights_dir / "fast_res50_256x192.pth"): "synthetic",
    }
    (warning,) = [r for r in coco.log_records() if r["level"].startswith("warn")]
    assert "synthetic" in warning["message"]
    assert (details["detector_size"], details["flip"], details["device"]) == (
        int(DETECTOR_SIZE),
        False,
        "cpu",
    )
    assert details["seconds"] > 0


def test_the_health_answer_names_the_keypoint_thresholds_a_request_gets(
    coco: NuclioFunction, weights_dir: Path
) -> None:
    """The preset's per-keypoint defaults, or the setting's one value when it is set."""
    model = coco.context.user_data.model
    assert model.info()["keypoint_threshold"] == "per keypoint: 0.4 for 17"
    settings = Config(weights_dir=weights_dir, keypoint_threshold=0.2)
    assert Predictor(model.pipeline, settings).describe()["keypoint_threshold"] == 0.2


def test_missing_weights_fail_init_naming_the_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as info:
        NuclioFunction(function_env(tmp_path))
    message = str(info.value)
    assert "yolov3-spp.weights" in message and "fast_res50_256x192.pth" in message
    assert f"make weights PRESET=fastpose_res50_coco DETECTOR=yolov3-spp WEIGHTS_DIR={tmp_path}" in message
    assert "python -m alphapose.weights --preset fastpose_res50_coco --detector yolov3-spp" in message
    assert "ALPHAPOSE_WEIGHTS_DIR" in message


def test_missing_checkpoint_alone_is_named(weights_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "yolov3-spp.weights").symlink_to(weights_dir / "yolov3-spp.weights")
    with pytest.raises(WeightsError) as info:
        NuclioFunction(function_env(tmp_path, ALPHAPOSE_PRESET="fastpose_res50_halpe26"))
    assert "halpe26_fast_res50_256x192.pth" in str(info.value)
    assert "yolov3-spp.weights" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALPHAPOSE_PRESET", "fastpose_res152"),
        ("ALPHAPOSE_DEVICE", "gpu"),
        ("ALPHAPOSE_DEVICE", "cuda:7"),
        ("ALPHAPOSE_DETECTOR_SIZE", "600"),
        ("ALPHAPOSE_DETECTOR_SIZE", "0"),
        ("ALPHAPOSE_DETECTOR_SIZE", "4128"),
        ("ALPHAPOSE_DETECTOR_SIZE", "large"),
        ("ALPHAPOSE_FLIP", "2"),
        ("ALPHAPOSE_MAX_BATCH", "0"),
        ("ALPHAPOSE_KEYPOINT_THRESHOLD", "1.5"),
        ("ALPHAPOSE_MAX_PIXELS", "5e7"),
        ("ALPHAPOSE_DETECTOR_CONFIDENCE", "-0.1"),
        ("ALPHAPOSE_DETECTOR_NMS", "nan"),
    ],
)
def test_invalid_configuration_fails_init_naming_the_variable(
    variable: str, value: str, weights_dir: Path
) -> None:
    with pytest.raises(ConfigError, match=f"{variable}='{value}'"):
        NuclioFunction(function_env(weights_dir, **{variable: value}))


def test_config_from_env_parses_every_variable() -> None:
    config = Config.from_env(
        {
            "ALPHAPOSE_WEIGHTS_DIR": "/models",
            "ALPHAPOSE_PRESET": " fastpose_res50_halpe26 ",
            "ALPHAPOSE_DEVICE": "CPU",
            "ALPHAPOSE_DETECTOR_SIZE": "416",
            "ALPHAPOSE_FLIP": "true",
            "ALPHAPOSE_MAX_BATCH": "8",
            "ALPHAPOSE_KEYPOINT_THRESHOLD": "0.05",
            "ALPHAPOSE_MAX_PIXELS": "1000000",
            "ALPHAPOSE_DETECTOR_CONFIDENCE": "0.3",
            "ALPHAPOSE_DETECTOR_NMS": "0.45",
            "UNRELATED": "x",
        }
    )
    assert config == Config(
        weights_dir=Path("/models"),
        options=PipelineOptions(
            preset="fastpose_res50_halpe26",
            device="cpu",
            detector_size=416,
            flip=True,
            max_batch=8,
            detector_confidence=0.3,
            detector_nms=0.45,
        ),
        keypoint_threshold=0.05,
        max_pixels=1_000_000,
    )


def test_config_defaults_and_empty_values() -> None:
    config = Config.from_env({"ALPHAPOSE_PRESET": "", "ALPHAPOSE_FLIP": "  "})
    assert config == Config.from_env({})
    assert config.weights_dir == Path("weights")
    options = config.options
    assert (options.preset, options.detector, options.device, options.detector_input_size, options.flip) == (
        "fastpose_res50_coco",
        "yolov3-spp",
        "auto",
        608,
        False,
    )
    # no keypoint threshold: each preset's own per-keypoint ones (0.4 for every COCO keypoint)
    assert (options.max_batch, config.keypoint_threshold, config.max_pixels) == (64, None, 50_000_000)
    assert (options.detector_confidence, options.detector_nms) == (0.1, 0.6)


def test_flags_win_over_variables_and_errors_name_the_flag() -> None:
    environ = {"ALPHAPOSE_DEVICE": "cpu", "ALPHAPOSE_PRESET": "fastpose_res50_halpe26"}
    config = Config.from_env(environ, flags={"--device": "cuda"})
    assert (config.options.device, config.options.preset) == ("cuda", "fastpose_res50_halpe26")
    with pytest.raises(ConfigError, match=r"^invalid --device 'gpu': expected auto, cpu, cuda or cuda:N$"):
        Config.from_env(environ, flags={"--device": "gpu"})
    with pytest.raises(ConfigError, match=r"^invalid --detector-size '33'"):
        Config.from_env({}, flags={"--detector-size": "33"})


# --- good requests -----------------------------------------------------------------------------------


def test_cvat_request_answers_one_valid_skeleton(reference: list[dict]) -> None:
    assert cvat_violations(reference, label_spec(COCO17)) == []
    (person,) = reference
    assert person["confidence"] == pytest.approx(BOX_SCORE)
    # Keypoints come back in image pixels: inside the person's crop box, the box (here the whole image)
    # grown 1.25 times after widening to the 3:4 crop shape.
    crop_w, crop_h = 1.25 * max(WIDTH, 0.75 * HEIGHT), 1.25 * max(HEIGHT, WIDTH / 0.75)
    for element in person["elements"]:
        x, y = element["points"]
        assert abs(x - WIDTH / 2) <= crop_w / 2 and abs(y - HEIGHT / 2) <= crop_h / 2
        assert element["outside"] is (element["confidence"] < 0.4)


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-8", "application/json; charset=utf-8"])
def test_bytes_bodies_give_the_same_answer(
    coco: NuclioFunction, reference: list[dict], content_type: str
) -> None:
    result = coco.invoke(json.dumps({"image": IMAGE_B64}), content_type=content_type)
    assert result.status == 200
    assert result.json() == reference


def test_str_body_gives_the_same_answer(coco: NuclioFunction, reference: list[dict]) -> None:
    event = nuclio_sdk.Event(body=json.dumps({"image": IMAGE_B64}), content_type="text/plain", _id="str-body")
    response = main.handler(coco.context, event)
    assert (response.status_code, response.content_type) == (200, "application/json")
    assert json.loads(response.body) == reference


def test_halpe26_answer_is_valid(halpe: NuclioFunction) -> None:
    result = halpe.post_json({"image": IMAGE_B64, "threshold": 0.5})
    assert result.status == 200
    answer = result.json()
    assert cvat_violations(answer, label_spec(HALPE26)) == []
    assert len(answer) == 1 and len(answer[0]["elements"]) == 26


def test_threshold_above_the_box_score_drops_the_person(coco: NuclioFunction) -> None:
    assert coco.post_json({"image": IMAGE_B64, "threshold": 0.95}).json() == []


def test_keypoint_threshold_sets_outside_flags(coco: NuclioFunction, reference: list[dict]) -> None:
    confidences = [e["confidence"] for e in reference[0]["elements"]]
    threshold = float(min(max(np.median(confidences), 0.0), 1.0))
    (person,) = coco.post_json({"image": IMAGE_B64, "keypoint_threshold": threshold}).json()
    assert [e["outside"] for e in person["elements"]] == [c < threshold for c in confidences]
    assert [e["points"] for e in person["elements"]] == [e["points"] for e in reference[0]["elements"]]


def test_coco_format(coco: NuclioFunction, reference: list[dict]) -> None:
    result = coco.post_json({"image": IMAGE_B64, "format": "coco", "image_id": 17})
    assert result.status == 200
    (entry,) = result.json()
    assert list(entry) == ["image_id", "category_id", "keypoints", "score", "box", "idx"]
    assert (entry["image_id"], entry["category_id"], entry["idx"]) == (17, 1, 0)
    assert entry["box"] == pytest.approx([0, 0, WIDTH, HEIGHT])
    triplets = np.reshape(entry["keypoints"], (17, 3))
    elements = reference[0]["elements"]
    np.testing.assert_allclose(triplets[:, :2], [e["points"] for e in elements])
    np.testing.assert_allclose(triplets[:, 2], [e["confidence"] for e in elements])
    assert entry["score"] == pytest.approx(
        triplets[:, 2].mean() + BOX_SCORE + 1.25 * triplets[:, 2].max(), rel=1e-5
    )


def test_nobody_detected_gives_an_empty_list(empty_weights_dir: Path) -> None:
    function = NuclioFunction(function_env(empty_weights_dir))
    result = function.post_json({"image": IMAGE_B64})
    assert (result.status, result.body) == (200, b"[]")


# --- bad requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b'{"image": "%%%"}', "application/json", 400, "invalid_base64"),
        (
            json.dumps({"image": base64.b64encode(b"GIF89 but not really").decode()}),
            "application/json",
            400,
            "invalid_image",
        ),
        (b'{"threshold": 0.5}', "application/json", 400, "missing_image"),
        (b'{"image": 42}', "application/json", 400, "invalid_image_field"),
        (json.dumps({"image": IMAGE_B64, "threshold": "high"}), "application/json", 400, "invalid_threshold"),
        (json.dumps({"image": IMAGE_B64, "threshold": True}), "application/json", 400, "invalid_threshold"),
        (
            json.dumps({"image": IMAGE_B64, "keypoint_threshold": 2}),
            "application/json",
            400,
            "invalid_keypoint_threshold",
        ),
        (json.dumps({"image": IMAGE_B64, "format": "yolo"}), "application/json", 400, "invalid_format"),
        (
            b'{"image": "abc',
            "application/json",
            400,
            "invalid_json",
        ),  # Nuclio leaves undecodable JSON as bytes
        (b'{"image": "abc', "text/plain", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_body"),
        (b'[{"image": "abc"}]', "application/json", 400, "invalid_body"),
        (json.dumps({"image": encoded(scene(100, 100))}), "application/json", 413, "image_too_large"),
    ],
)
def test_bad_request_gets_its_status_and_code(
    halpe: NuclioFunction, body: bytes | str, content_type: str, status: int, error: str
) -> None:
    result = halpe.invoke(body, content_type=content_type)
    assert_error(result, status, error)
    (record,) = [r for r in halpe.log_records() if r["message"] == "Request refused"][-1:]
    assert (record["level"], record["with"]["error"]) == ("warning", error)


def test_good_request_right_after_bad_ones(halpe: NuclioFunction) -> None:
    assert_error(halpe.post_json({"image": "!!"}), 400, "invalid_base64")
    assert_error(halpe.invoke(b"\x00\x01", content_type="application/json"), 400, "invalid_json")
    result = halpe.post_json({"image": IMAGE_B64})
    assert result.status == 200 and len(result.json()) == 1


def test_pipeline_exception_gives_500_and_the_worker_keeps_serving(
    coco: NuclioFunction, reference: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(image: np.ndarray) -> list:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(coco.model.predictor, "pipeline", broken)
    result = coco.post_json({"image": IMAGE_B64})
    payload = assert_error(result, 500, "internal_error")
    assert "Traceback" not in result.body.decode() and "secret" not in payload["detail"]
    record = coco.log_records()[-1]
    assert (record["level"], record["message"]) == ("error", "Unexpected error")
    assert "secret internal state" in record["with"]["exc"]
    assert "Traceback" in record["with"]["traceback"] and "broken" in record["with"]["traceback"]
    assert record["with"]["request_id"] in payload["detail"]
    monkeypatch.undo()
    after = coco.post_json({"image": IMAGE_B64})
    assert after.status == 200 and after.json() == reference


def test_out_of_memory_gives_503_and_empties_the_cache(
    coco: NuclioFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    emptied = []

    def out_of_memory(image: np.ndarray) -> list:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(coco.model.predictor, "pipeline", out_of_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    assert_error(coco.post_json({"image": IMAGE_B64}), 503, "out_of_memory")
    assert emptied == [True]
    assert coco.log_records()[-1]["level"] == "error"


def test_exception_escaping_the_handler_is_the_runtime_500(coco: NuclioFunction) -> None:
    saved = coco.context.user_data.model
    del coco.context.user_data.model
    try:
        result = coco.post_json({"image": IMAGE_B64})
    finally:
        coco.context.user_data.model = saved
    assert (result.status, result.content_type) == (500, "text/plain")
    assert result.body.startswith(b'Exception caught in handler - "')
    assert coco.log_records()[-1]["message"] == "Exception caught in handler"


# --- Nuclio's batch mode (spec.triggers.*.batch in the GPU files) ------------------------------------


def test_a_batch_answers_each_request_by_its_event_id(coco: NuclioFunction, reference: list[dict]) -> None:
    """Good and bad requests in one batch: each gets its own answer, the good ones the single-request
    answer (the detector ran on their images in one forward), in any image size and format."""
    wide = encoded(scene(width=128, height=80))
    single_wide = coco.post_json({"image": wide}).json()
    single_coco = coco.post_json({"image": IMAGE_B64, "format": "coco", "image_id": 3}).json()
    answers = coco.post_batch(
        [
            json.dumps({"image": IMAGE_B64}),
            json.dumps({"image": "not base64!"}),
            json.dumps({"image": wide}),
            "{not json",
            json.dumps({"image": IMAGE_B64, "format": "coco", "image_id": 3}),
            json.dumps({"image": IMAGE_B64, "threshold": 2}),
        ]
    )
    assert answers[0].status == 200 and answers[0].json() == reference
    assert_error(answers[1], 400, "invalid_base64")
    assert answers[2].status == 200 and answers[2].json() == single_wide
    assert_error(answers[3], 400, "invalid_json")
    assert answers[4].status == 200 and answers[4].json() == single_coco
    assert_error(answers[5], 400, "invalid_threshold")


def test_a_batch_of_refused_requests_runs_no_forward(
    coco: NuclioFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coco.model, "infer_batch", lambda requests: pytest.fail("a forward ran"))
    answers = coco.post_batch(["", json.dumps({"image": None})])
    assert_error(answers[0], 400, "invalid_body")
    assert_error(answers[1], 400, "missing_image")


def test_a_failing_batch_forward_answers_every_valid_request(
    coco: NuclioFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(requests: list) -> list:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(coco.model, "infer_batch", broken)
    answers = coco.post_batch([json.dumps({"image": IMAGE_B64}), "[]", json.dumps({"image": IMAGE_B64})])
    for index in (0, 2):
        payload = assert_error(answers[index], 500, "internal_error")
        assert f"event-{index}" in payload["detail"] and "secret" not in payload["detail"]
    assert_error(answers[1], 400, "invalid_body")
    record = coco.log_records()[-1]
    assert record["message"] == "Unexpected error" and "secret internal state" in record["with"]["exc"]

    def out_of_memory(requests: list) -> list:
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(coco.model, "infer_batch", out_of_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    answers = coco.post_batch([json.dumps({"image": IMAGE_B64})] * 2)
    assert [answer.status for answer in answers] == [503, 503]
