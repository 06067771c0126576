"""YOLOX in the detector table, the loader, the weights tooling and the synthetic weights writer.

The plain HTTPS download is exercised against a stand-in for ``requests.get`` that serves byte ranges.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

import alphapose
from alphapose.detection.detectors import DETECTORS, detector_for_file, get_detector
from alphapose.detection.person_detector import FAMILIES, PersonDetector
from alphapose.detection.yolox_net import YOLOX, YoloxScale
from alphapose.errors import WeightsError
from alphapose.weights.download import ensure_weights, http_download, minimum_size, verify_file


@pytest.fixture(scope="module")
def yolox_dir(weights_dir: Path) -> Path:
    """The session's synthetic weights: their yolox_s.pth finds one person covering the image."""
    return weights_dir


def test_table_rows_name_the_release_files() -> None:
    names = [name for name, spec in DETECTORS.items() if spec.family == "yolox"]
    assert names == ["yolox-s", "yolox-m", "yolox-l", "yolox-x"]
    for name in names:
        spec = get_detector(name)
        file_name = name.replace("-", "_") + ".pth"
        assert spec.weights.name == file_name and spec.input_size == 640
        assert spec.weights.url == (
            f"https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/{file_name}"
        )
        assert detector_for_file(file_name) is spec
    assert [DETECTORS[n].gflops for n in names] == [26.8, 73.8, 155.6, 281.9]


def test_load_detector_recognises_the_family_from_the_file_name(yolox_dir: Path) -> None:
    model = alphapose.load_detector(yolox_dir / "yolox_s.pth", device="cpu", input_size=None)
    assert isinstance(model, YOLOX) and not model.training
    assert model.scale == YoloxScale(depth=0.33, width=0.50)
    with pytest.raises(WeightsError, match=r"does not fit yolox-m.*fits yolox-s"):
        alphapose.load_detector(yolox_dir / "yolox_s.pth", detector="yolox-m")
    with pytest.raises(ValueError, match="multiple of 32"):
        alphapose.load_detector(yolox_dir / "yolox_s.pth", input_size=600)


def test_synthetic_release_file_finds_one_person_covering_the_image(yolox_dir: Path) -> None:
    model = alphapose.load_detector(yolox_dir / "yolox_s.pth", input_size=320, fold_batch_norm=True)
    detector = PersonDetector(model.to(memory_format=torch.channels_last), FAMILIES["yolox"], 320)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    boxes, scores = detector(image)
    assert boxes.tolist() == [[0.0, 0.0, 640.0, 480.0]]
    assert scores.tolist() == pytest.approx([0.9])


def test_synthetic_file_passes_verification_and_is_called_synthetic(yolox_dir: Path) -> None:
    verified = verify_file(yolox_dir / "yolox_s.pth", {})
    assert verified.state == "synthetic"
    assert (yolox_dir / "yolox_s.pth").stat().st_size >= minimum_size("yolox_s.pth")


def test_truncated_release_file_is_refused(yolox_dir: Path, tmp_path: Path) -> None:
    data = (yolox_dir / "yolox_s.pth").read_bytes()
    (tmp_path / "yolox_s.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        verify_file(tmp_path / "yolox_s.pth", {})


class FakeServer:
    """Stands in for ``requests.get``: serves ``content``, honouring byte ranges when ``ranges``."""

    def __init__(self, content: bytes, ranges: bool = True, drop_after: int | None = None) -> None:
        self.content = content
        self.ranges = ranges
        self.drop_after = drop_after  # bytes sent before the first connection breaks
        self.requests: list[dict[str, str]] = []

    @contextmanager
    def __call__(self, url: str, headers: dict[str, str], stream: bool, timeout: object) -> Iterator[object]:
        self.requests.append(dict(headers))
        start = int(headers["Range"].removeprefix("bytes=").rstrip("-")) if "Range" in headers else 0
        response = requests.Response()
        if self.ranges and start >= len(self.content) > 0:
            response.status_code = 416
            yield response
            return
        partial = self.ranges and start > 0
        body = self.content[start:] if partial else self.content
        response.status_code = 206 if partial else 200
        response.headers["Content-Length"] = str(len(body))
        drop, self.drop_after = self.drop_after, None

        def chunks(chunk_size: int) -> Iterator[bytes]:
            for i in range(0, len(body), 1000):
                if drop is not None and i >= drop:
                    raise requests.ConnectionError("connection reset")
                yield body[i : i + 1000]

        response.iter_content = lambda chunk_size=1: chunks(chunk_size)  # type: ignore[method-assign]
        yield response


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "server-ignores-ranges"])
def test_plain_download_resumes_after_a_dropped_connection(
    ranges: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    content = bytes(range(256)) * 100
    server = FakeServer(content, ranges=ranges, drop_after=10_000)
    monkeypatch.setattr(requests, "get", server)
    http_download("https://example.org/yolox_s.pth", tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == content
    assert server.requests == [{}, {"Range": "bytes=10000-"}]
    assert "MiB" in capsys.readouterr().err
    http_download("https://example.org/yolox_s.pth", tmp_path / "file")  # already complete
    assert (tmp_path / "file").read_bytes() == content


def test_release_file_is_downloaded_over_https_verified_and_published(
    unmarked_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeServer((unmarked_weights_dir / "yolox_s.pth").read_bytes())
    monkeypatch.setattr(requests, "get", server)
    monkeypatch.setattr("socket.getaddrinfo", lambda host, port: [])
    (verified,) = ensure_weights(tmp_path, [get_detector("yolox-s").weights])
    assert verified.path == tmp_path / "yolox_s.pth" and verified.state == "unrecorded"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolox_s.pth"]


def test_pipeline_runs_with_a_yolox_detector(weights_dir: Path) -> None:
    from alphapose.pipeline import PosePipeline

    pipeline = PosePipeline.from_weights_dir(weights_dir, detector="yolox-s", device="cpu")
    assert pipeline.detector.input_size == 640 and pipeline.detector.family is FAMILIES["yolox"]
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    (pose,) = pipeline(image)
    assert pose.box.tolist() == [0.0, 0.0, 640.0, 480.0]
    assert pose.box_score == pytest.approx(0.9)  # the objectness, as AlphaPose hands it on
