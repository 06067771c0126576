"""Shared fixtures: official-format weights with random values, generated once per test session, and the
CVAT SDK's retries without their pauses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from urllib3.util.retry import Retry

# Nothing of hypothesis in the working tree: no example database, and its other files (a cache of
# constants) under the temporary directory instead of ./.hypothesis. In CI (the CI variable set) the
# examples are derandomized, so a run is reproducible from the commit alone.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "alphapose-tests-hypothesis")
settings.register_profile("local", database=None)
settings.register_profile("ci", database=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "local")

TEST_PRESETS = ("fastpose_res50_coco", "fastpose_res50_halpe26")
TEST_DETECTORS = ("yolov3-spp", "yolox-s")


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights for the COCO and Halpe FastPose presets and the detectors of the function files (YOLOv3-SPP,
    the library's default, and YOLOX-s, the CPU files'); each detector finds one person covering the image."""
    from tools.synthetic_weights import write_synthetic_weights

    directory = tmp_path_factory.mktemp("weights")
    return write_synthetic_weights(directory, TEST_PRESETS, persons=True, detectors=TEST_DETECTORS)


@pytest.fixture(scope="session")
def empty_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights whose detector finds nobody."""
    from tools.synthetic_weights import write_synthetic_weights

    return write_synthetic_weights(tmp_path_factory.mktemp("weights_empty"), TEST_PRESETS[:1], persons=False)


@pytest.fixture
def linked_weights_dir(weights_dir: Path, tmp_path: Path) -> Path:
    """The session's weights files linked into a directory of this test's: what a test builds beside them
    (an engine's export cache, a quantized model) stays its own, and ``weights_dir`` holds the files only."""
    directory = tmp_path / "weights"
    directory.mkdir()
    for path in weights_dir.iterdir():
        if path.is_file():
            (directory / path.name).symlink_to(path)
    return directory


@pytest.fixture(scope="session")
def unmarked_weights_dir(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detectors' and the COCO preset's files of ``weights_dir`` without the synthetic writer's mark:
    what files downloaded from the official source look like to the weights checks (``unrecorded``)."""
    import torch

    from alphapose.detection.darknet import DARKNET_HEADER_BYTES

    directory = tmp_path_factory.mktemp("weights_unmarked")
    data = bytearray((weights_dir / "yolov3-spp.weights").read_bytes())
    data[DARKNET_HEADER_BYTES - 8 : DARKNET_HEADER_BYTES] = (0).to_bytes(8, "little")  # images seen: 0
    (directory / "yolov3-spp.weights").write_bytes(data)
    state = torch.load(weights_dir / "yolox_s.pth", weights_only=True)
    torch.save({"model": dict(state["model"])}, directory / "yolox_s.pth")  # a plain dict: no metadata
    pose = "fast_res50_256x192.pth"
    torch.save(dict(torch.load(weights_dir / pose, weights_only=True)), directory / pose)
    return directory


@pytest.fixture(autouse=True)
def _sdk_retries_without_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CVAT SDK retries an idempotent request after a 502, 503 or 504 or a dropped connection
    (urllib3, pausing 0.5 s and doubling). The stub server loses answers on purpose: the retries still
    happen, without the seconds of pauses."""
    monkeypatch.setattr(Retry, "sleep", lambda self, response=None: None)
