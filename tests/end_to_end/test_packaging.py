"""The installable library: what a wheel holds, what it requires, and that it works from anywhere.

The wheel is built from this checkout and unpacked into a temporary directory that becomes the only
place ``alphapose`` can be imported from; the examples of docs/python.md then run from another
directory, exactly as written there. Building the wheel and running the examples take half a minute:
``make test-slow`` (CI runs both suites).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from repo_paths import REPO

pytestmark = pytest.mark.slow

# Modules only the tools need: building and running a pipeline must import none of them.
TOOL_MODULES = ("msgpack", "yaml", "gdown", "tqdm", "requests", "nuclio_sdk", "http.server", "cvat_sdk")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (the tools, tests and bench included, so that the
    package selection is what keeps them out), so that setuptools' ``build/`` and ``*.egg-info`` land
    in the temporary directory, not in the checkout."""
    source, out = tmp_path_factory.mktemp("source") / "checkout", tmp_path_factory.mktemp("dist")
    ignored = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".*_cache")

    def ignore(directory: str, names: list[str]) -> set[str]:
        """The checkout's own weights and build folders, not the package's alphapose/weights/."""
        top = {"build", "weights"} & set(names) if Path(directory) == REPO else set()
        return set(ignored(directory, names)) | top

    shutil.copytree(REPO, source, ignore=ignore)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("alphapose-*.whl")
    return path


def requirement_lines(name: str) -> list[str]:
    lines = (REPO / name).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_wheel_holds_the_library_and_its_data_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"alphapose"}
    assert "alphapose/data/weights.sha256" in names
    assert "alphapose/cvat/request.py" in names and "alphapose/detection/darknet.py" in names


def test_wheel_requires_the_run_time_pins_and_offers_every_extra(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    requires = re.findall(r"^Requires-Dist: (.+)$", archive.read(metadata).decode(), re.MULTILINE)
    plain = sorted(r for r in requires if "extra ==" not in r)
    assert plain == sorted(requirement_lines("requirements.txt"))
    for extra in ("weights", "cvat", "video", "eval", "onnxruntime", "openvino", "int8"):
        extras = sorted(r.split(";")[0].strip() for r in requires if f'extra == "{extra}"' in r)
        assert extras == sorted(requirement_lines(f"requirements-{extra}.txt"))


def _elsewhere(wheel: Path, weights_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The wheel unpacked into ``site``, and a working directory away from the checkout whose
    ``weights`` are the test weights: (site, work)."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "weights").symlink_to(weights_dir, target_is_directory=True)
    return site, work


def _run_installed(code: str, site: Path, work: Path) -> str:
    """Run ``code`` in ``work`` with the unpacked wheel as the only copy of the package; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_python_guide_runs_from_another_directory(wheel: Path, weights_dir: Path, tmp_path: Path) -> None:
    site, work = _elsewhere(wheel, weights_dir, tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    cv2.imwrite(str(work / "people.jpg"), image)
    guide = (REPO / "docs" / "python.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", guide, re.DOTALL).group(1)
    probe = f"""
import sys, torch, torchvision, cv2, numpy, PIL.Image
threads, pixel_cap = torch.get_num_threads(), PIL.Image.MAX_IMAGE_PIXELS
before = set(sys.modules)  # what the run-time requirements import by themselves (torch imports tqdm)
{snippet}
import alphapose, json
print(json.dumps({{
    "file": alphapose.__file__,
    "tools": [m for m in {TOOL_MODULES!r} if m in sys.modules and m not in before],
    "unchanged": (torch.get_num_threads(), PIL.Image.MAX_IMAGE_PIXELS) == (threads, pixel_cap),
}}))
"""
    report = json.loads(_run_installed(probe, site, work).strip().splitlines()[-1])
    assert report["file"].startswith(str(site))  # the installed copy, not the checkout
    assert report["tools"] == []
    assert report["unchanged"]  # no thread cap, no Pillow limit: the library changes nothing process-wide


def test_the_python_guides_tracking_example_runs_on_a_video(
    wheel: Path, weights_dir: Path, tmp_path: Path
) -> None:
    """The guide's second example, as written, from the installed copy, on a short video file."""
    site, work = _elsewhere(wheel, weights_dir, tmp_path)
    writer = cv2.VideoWriter(str(work / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for frame in np.random.default_rng(1).integers(0, 256, (3, 120, 160, 3), dtype=np.uint8):
        writer.write(frame)
    writer.release()
    guide = (REPO / "docs" / "python.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", guide.split("## Tracking", 1)[1], re.DOTALL)[0]
    printed = _run_installed(snippet + "\nimport alphapose\nprint(alphapose.__file__)", site, work)
    assert printed.strip().splitlines()[-1].startswith(str(site))
