"""Deployment files: the four function yamls, Dockerfile.base, the Makefile and CI script agree with the code.

These are the contracts Nuclio and CVAT read (runtime, handler, trigger limits, label spec) and the
ones between our own files (the Python version of every image, where the weights are baked, which
base image the GPU yamls expect), checked by parsing the files rather than by their wording.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_paths import REPO

from alphapose.cvat.spec import label_spec
from alphapose.detection.detectors import DEFAULT_DETECTOR
from alphapose.engines import DEFAULT_ENGINE, parse_engines
from alphapose.pose.presets import PRESETS
from alphapose.weights.download import required_files
from tools import function_yaml

ROOT = REPO
DOCKERFILE = ROOT / "Dockerfile.base"

# Written out here, independent of the generator's own table.
EXPECTED_FILES = {
    "function.yaml": ("fastpose_res50_coco", False),
    "function-gpu.yaml": ("fastpose_res50_coco", True),
    "function-halpe26.yaml": ("fastpose_res50_halpe26", False),
    "function-halpe26-gpu.yaml": ("fastpose_res50_halpe26", True),
    "function-wholebody136.yaml": ("fastpose_res50_wholebody136", False),
    "function-wholebody136-gpu.yaml": ("fastpose_res50_wholebody136", True),
}
# CPU files run YOLOX-s (the detector is most of a CPU request), GPU files YOLOX-x (AlphaPose's default YOLOX)
EXPECTED_DETECTORS = {
    "function.yaml": "yolox-s",
    "function-gpu.yaml": "yolox-x",
    "function-halpe26.yaml": "yolox-s",
    "function-halpe26-gpu.yaml": "yolox-x",
    "function-wholebody136.yaml": "yolox-s",
    "function-wholebody136-gpu.yaml": "yolox-x",
}
MAKE_TARGETS = (
    "help",
    "setup",
    "serve",
    "serve-synthetic",
    "test",
    "lint",
    "weights",
    "yaml",
    "base-image",
    "deploy-local",
    "deploy-kube",
    "bench",
    "clean",
)


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def env_of(doc: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in doc["spec"]["env"]}


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE))


def dockerfile_env() -> dict[str, str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env = {}
    for line in re.findall(r"^ENV (.+)$", text, flags=re.MULTILINE):
        env.update(pair.split("=", 1) for pair in shlex.split(line))
    return env


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)


def go_duration_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", text)
    assert match, f"not a Go duration in milliseconds, seconds or minutes: {text!r}"
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_function_yaml_is_what_nuclio_and_cvat_expect(name: str) -> None:
    preset_name, gpu = EXPECTED_FILES[name]
    preset = PRESETS[preset_name]
    doc = load(name)
    meta, spec = doc["metadata"], doc["spec"]

    assert meta["namespace"] == "cvat"
    assert meta["name"].startswith("pth-alphapose-")
    annotations = meta["annotations"]
    assert annotations["type"] == "detector"
    assert annotations["framework"] == "pytorch"
    assert annotations["name"]
    labels = json.loads(annotations["spec"])
    assert labels == label_spec(preset.skeleton)
    assert [s["name"] for s in labels[0]["sublabels"]] == list(preset.skeleton.keypoints)

    assert spec["description"]
    assert spec["runtime"] == "python:3.11"
    assert spec["handler"] == "main:handler"
    assert 0 < go_duration_seconds(spec["eventTimeout"]) < 120  # below CVAT's default request timeout
    assert spec["readinessTimeoutSeconds"] >= 120
    assert spec["platform"]["attributes"]["restartPolicy"] == {"name": "always", "maximumRetryCount": 3}

    trigger = spec["triggers"]["myHttpTrigger"]
    assert trigger["kind"] == "http"
    assert "maxWorkers" not in trigger
    assert trigger["numWorkers"] == 1
    assert trigger["workerAvailabilityTimeoutMilliseconds"] == 10000
    assert trigger["attributes"]["maxRequestBodySize"] == 33554432
    # Nuclio's batch mode on the GPU (nuclio pkg/functionconfig/types.go, BatchConfiguration): the
    # handler takes lists; a short timeout, since a lone request waits it out.
    if gpu:
        batch = trigger["batch"]
        assert batch["mode"] == "enable" and batch["batchSize"] > 1
        assert 0 < go_duration_seconds(batch["timeout"]) <= 0.05
    else:
        assert "batch" not in trigger

    env = env_of(doc)
    assert env["ALPHAPOSE_PRESET"] == preset_name
    assert env["ALPHAPOSE_DEVICE"] == ("cuda" if gpu else "cpu")
    # The CPU files name the precision with its default (no silent change) and say when to set bf16.
    assert env.get("ALPHAPOSE_PRECISION") == (None if gpu else "auto")
    # The CPU files name their engine; GPU files run PyTorch (the runtimes run on the CPU only).
    assert (env.get("ALPHAPOSE_ENGINE") is None) is gpu
    if not gpu:
        parse_engines(env["ALPHAPOSE_ENGINE"])
    text = (ROOT / name).read_text()
    assert ("amx_bf16 or\n  # avx512_bf16 in /proc/cpuinfo" in text) is not gpu
    if gpu:
        assert spec["resources"] == {"limits": {"nvidia.com/gpu": 1}}
        assert spec["nodeSelector"] == {"gpu": "true"}
        assert spec["build"]["noBaseImagesPull"] is True
    else:
        assert "resources" not in spec
        assert "nodeSelector" not in spec


def test_cpu_and_gpu_files_of_a_preset_deploy_the_same_function() -> None:
    names = {name: load(name)["metadata"]["name"] for name in EXPECTED_FILES}
    assert names["function.yaml"] == names["function-gpu.yaml"]
    assert names["function-halpe26.yaml"] == names["function-halpe26-gpu.yaml"]
    assert names["function.yaml"] != names["function-halpe26.yaml"]


def test_files_on_disk_are_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    assert set(function_yaml.FUNCTION_FILES) == set(EXPECTED_FILES)
    assert function_yaml.stale_files(ROOT) == []
    # and the check notices a stale file
    for name in EXPECTED_FILES:
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "function.yaml").write_text((ROOT / "function.yaml").read_text().replace("60s", "61s"))
    assert function_yaml.stale_files(tmp_path) == ["function.yaml"]
    assert function_yaml.main(["--check", "--dir", str(tmp_path)]) == 1


def test_cpu_image_installs_the_pinned_requirements_with_cpu_torch() -> None:
    pins = function_yaml.read_requirements()
    assert pins == [
        line
        for name in ("requirements.txt", "requirements-weights.txt")
        for line in (ROOT / name).read_text().splitlines()
        if line and not line.startswith("#")
    ]  # the run-time and the weights pins, and nothing of the development tools
    assert not {"pytest", "ruff", "msgpack", "PyYAML", "nuclio-sdk"} & {p.split("==")[0] for p in pins}
    for name, (preset, gpu) in EXPECTED_FILES.items():
        if gpu:
            continue
        detector = EXPECTED_DETECTORS[name]
        build = load(name)["spec"]["build"]
        assert build["baseImage"].startswith("python:3.11")
        assert ":latest" not in build["baseImage"]
        install, download = (d["value"] for d in build["directives"]["preCopy"])
        installed = [word for word in shlex.split(install) if "==" in word]
        # and the pins of the runtime(s) its ALPHAPOSE_ENGINE names, once each
        engine = env_of(load(name))["ALPHAPOSE_ENGINE"]
        runtimes = {e for e in parse_engines(engine).values() if e != "torch"}
        runtime_pins = [
            line
            for runtime in sorted(runtimes)
            for line in (ROOT / f"requirements-{runtime}.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        runtime_pins = [p for i, p in enumerate(runtime_pins) if p not in runtime_pins[:i] and p not in pins]
        expected = [*pins, *runtime_pins]
        assert installed == [
            p + "+cpu" if p.split("==")[0] in ("torch", "torchvision") else p for p in expected
        ]
        assert "--extra-index-url https://download.pytorch.org/whl/cpu" in install
        # the preCopy download fetches exactly the preset's files, under their official names
        assert re.findall(r"-O (\S+)", download) == [f.name for f in required_files([preset], [detector])]


def test_every_image_runs_the_weights_verification_for_its_preset() -> None:
    for name, (preset, _) in EXPECTED_FILES.items():
        doc = load(name)
        post_copy = [d["value"] for d in doc["spec"]["build"]["directives"]["postCopy"]]
        weights_dir = env_of(doc)["ALPHAPOSE_WEIGHTS_DIR"]
        detector = env_of(doc)["ALPHAPOSE_DETECTOR"]
        assert detector == EXPECTED_DETECTORS[name]
        engine = env_of(doc).get("ALPHAPOSE_ENGINE", "torch")
        # a CPU image whose engine is a runtime exports the networks once, after the weights are verified
        export = (
            []
            if engine == "torch"
            else [
                f"cd /opt/nuclio && python -m alphapose.engines --engine {engine} --preset {preset} "
                f"--detector {detector} --dir {weights_dir}"
            ]
        )
        # the GPU base image holds synthetic files only where its build allowed them: kept, not replaced
        keep = " --allow-synthetic" if "gpu" in name else ""
        assert post_copy == [
            f"cd /opt/nuclio && python -m alphapose.weights --preset {preset} --detector {detector} "
            f"--dir {weights_dir}{keep}",
            *export,
        ]


def test_dockerfile_base_pins_its_images_and_python_311() -> None:
    args = dockerfile_args()
    from_lines = re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert from_lines, "no FROM line"
    for image in from_lines:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        tag = resolved.partition(":")[2]
        assert tag and tag != "latest", f"unpinned base image {resolved}"
    assert re.fullmatch(r"13\.\d+\.\d+-cudnn-runtime-ubuntu(22|24)\.04", args["CUDA_IMAGE"].split(":")[1])
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    # Python 3.11 at an exact patch release, as both `python` and `python3` (a venv provides both)
    assert re.fullmatch(r"3\.11\.\d+", args["PYTHON_VERSION"])
    minor = ".".join(args["PYTHON_VERSION"].split(".")[:2])
    assert f"python:{minor}" == function_yaml.RUNTIME
    text = DOCKERFILE.read_text()
    assert "uv venv --seed --python ${PYTHON_VERSION} /opt/venv" in text
    assert dockerfile_env()["PATH"].startswith("/opt/venv/bin:")
    assert "sys.version_info[:2] == (3, 11)" in text


def test_dockerfile_base_installs_requirements_and_bakes_weights_where_the_gpu_yaml_looks() -> None:
    text = DOCKERFILE.read_text()
    assert "source=requirements.txt" in text and "source=requirements-weights.txt" in text
    assert "-r /tmp/requirements-cuda.txt -r /tmp/requirements-weights.txt" in text
    assert "requirements-dev" not in text
    assert dockerfile_args()["TORCH_CUDA"] == function_yaml.TORCH_CUDA
    baked = dockerfile_env()["ALPHAPOSE_WEIGHTS_DIR"]
    assert re.search(r"python -m alphapose\.weights --dir \$\{ALPHAPOSE_WEIGHTS_DIR\}", text)
    for name, (_, gpu) in EXPECTED_FILES.items():
        if gpu:
            assert env_of(load(name))["ALPHAPOSE_WEIGHTS_DIR"] == baked


def test_makefile_builds_the_base_image_the_gpu_yamls_use() -> None:
    dry_run = make("-n", "base-image")
    assert dry_run.returncode == 0, dry_run.stderr
    tag = re.search(r"-t (\S+)", dry_run.stdout).group(1)
    assert {load(n)["spec"]["build"]["baseImage"] for n, (_, gpu) in EXPECTED_FILES.items() if gpu} == {tag}


def test_make_help_lists_every_target() -> None:
    """Every target the Makefile declares phony (the commands a user runs), and those the README names."""
    result = make("help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert listed == set(phony.group(1).split())
    assert set(MAKE_TARGETS) <= listed
    makefile = (ROOT / "Makefile").read_text()
    for target in MAKE_TARGETS:
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.MULTILINE), target


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["base-image", "DOCKER=no-such-docker-here"], "'no-such-docker-here' not found on PATH"),
        (["deploy-local", "NUCTL=no-such-nuctl-here"], "'no-such-nuctl-here' not found on PATH"),
        (["deploy-kube", "NUCTL=true", "DOCKER=true", "REGISTRY="], "set REGISTRY"),
        (
            ["deploy-local", "NUCTL=true", "DOCKER=false"],
            "the Docker engine does not answer ('false info' failed)",
        ),
        (["base-image", "DOCKER=false"], "the Docker engine does not answer"),
        (["base-image", "DOCKER={fake}"], "Docker's buildx plugin is missing"),
        (
            ["deploy-local", "NUCTL=true", "DOCKER={fake}", "FUNCTION_FILE=function-gpu.yaml"],
            "run 'make base-image' first",
        ),
    ],
)
def test_targets_needing_absent_tools_stop_with_a_message(
    args: list[str], message: str, tmp_path: Path
) -> None:
    # A docker client whose engine answers but that has no buildx plugin and no images.
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\n[ "$1" = info ] && exit 0\nexit 1\n')
    fake.chmod(0o755)
    result = make(*(arg.format(fake=fake) for arg in args))
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.slow
def test_stage_holds_only_what_the_function_runs(tmp_path: Path) -> None:
    stage = tmp_path / "nuclio"
    result = make("stage", f"STAGE_DIR={stage}")
    assert result.returncode == 0, result.stderr
    for path in ("main.py", "model_handler.py", "requirements.txt", "requirements-weights.txt", "LICENSE"):
        assert (stage / path).is_file(), path
    for path in EXPECTED_FILES:
        assert (stage / path).is_file(), path
    assert (stage / "alphapose" / "weights" / "download.py").is_file()
    assert (stage / "alphapose" / "cvat" / "request.py").is_file()
    assert (stage / "alphapose" / "data" / "weights.sha256").is_file()
    assert not (stage / "alphapose" / "cvat" / "sdk_function.py").exists()  # needs the cvat extra
    top = {p.name for p in stage.iterdir()}
    assert top <= {"main.py", "model_handler.py", "alphapose", "LICENSE", *EXPECTED_FILES} | {
        "requirements.txt",
        "requirements-weights.txt",
    }  # no tools, tests, bench, .venv, weights or .git
    assert not list(stage.rglob("__pycache__"))
    # no tool code inside the package either: nothing under alphapose/ imports the tools' modules
    for source in (stage / "alphapose").rglob("*.py"):
        text = source.read_text()
        assert not re.search(
            r"^\s*(import|from) (tools|bench|msgpack|yaml|nuclio_sdk|cvat_sdk|cvat_cli)\b", text, re.M
        ), source
    assert not list(stage.rglob("__pycache__"))


def test_make_test_runs_pytest_and_ci_runs_lint_and_the_readme_test_command() -> None:
    assert re.search(r"-m pytest -q$", make("-n", "test").stdout, flags=re.MULTILINE)
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    script = ci.read_text()
    assert "set -euo pipefail" in script
    assert "pip install -r requirements-dev.txt" in script
    commands = [line.strip() for line in script.splitlines()]
    assert "make lint" in commands
    assert "make test" in commands
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", readme, flags=re.DOTALL).group(1)
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == [
        "make serve",
        "make serve-synthetic",  # the offline path, in one command
        "make test",
    ]


def test_stage_carries_hand_saved_weights_and_the_build_verifies_them(
    unmarked_weights_dir: Path, tmp_path: Path
) -> None:
    from tools.stage import stage

    weights_dir = unmarked_weights_dir  # as downloaded: no synthetic mark

    # Nothing in the weights directory: the function file is staged as generated and downloads.
    plain = tmp_path / "plain"
    assert stage(plain, "function.yaml", tmp_path / "no-weights") == []
    assert not (plain / "weights").exists()
    assert (plain / "function.yaml").read_text() == (ROOT / "function.yaml").read_text()

    # Every file the CPU function needs is there (and more): exactly those travel, verified in the build.
    staged = stage(tmp_path / "staged", "function.yaml", weights_dir)
    assert [p.name for p in staged] == ["yolox_s.pth", "fast_res50_256x192.pth"]
    assert sorted(p.name for p in (tmp_path / "staged" / "weights").iterdir()) == sorted(
        p.name for p in staged
    )
    doc = yaml.safe_load((tmp_path / "staged" / "function.yaml").read_text())
    directives = doc["spec"]["build"]["directives"]
    engine = env_of(doc)["ALPHAPOSE_ENGINE"]
    export = (
        []
        if engine == "torch"
        else [
            f"cd /opt/nuclio && python -m alphapose.engines --engine {engine} --preset fastpose_res50_coco "
            "--detector yolox-s --dir /opt/nuclio/weights"
        ]
    )
    assert [d["value"] for d in directives["postCopy"]] == [
        "cd /opt/nuclio && python -m alphapose.weights --verify --preset fastpose_res50_coco "
        "--detector yolox-s --dir /opt/nuclio/weights",
        *export,
    ]
    assert len(directives["preCopy"]) == 1 and "https://" not in str(directives).replace(
        "https://download.pytorch.org", ""
    )  # no download
    assert env_of(doc)["ALPHAPOSE_WEIGHTS_DIR"] == "/opt/nuclio/weights"
    # The other function files are staged unchanged, and GPU files never carry weights.
    assert (tmp_path / "staged" / "function-gpu.yaml").read_text() == (ROOT / "function-gpu.yaml").read_text()
    assert stage(tmp_path / "gpu", "function-gpu.yaml", weights_dir) == []


@pytest.mark.slow  # a subprocess or two of several seconds: make test-slow (CI runs both)
def test_stage_refuses_synthetic_weights_unless_asked_for_a_test_deployment(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copies of synthetic files, alone in another directory, are still recognised and stop the staging."""
    from alphapose.errors import WeightsError
    from tools.stage import main, stage

    copied = tmp_path / "weights"
    copied.mkdir()
    for name in ("yolox_s.pth", "fast_res50_256x192.pth"):
        shutil.copyfile(weights_dir / name, copied / name)
    with pytest.raises(WeightsError, match=r"yolox_s\.pth, fast_res50_256x192\.pth in .* are synthetic"):
        stage(tmp_path / "refused", "function.yaml", copied)
    assert not (tmp_path / "refused").exists()  # refused before anything is written
    assert stage(tmp_path / "gpu", "function-gpu.yaml", copied) == []  # GPU files carry no weights

    assert main(["--dir", str(tmp_path / "cli"), "--weights-dir", str(copied)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --weights-dir {copied}: ") and err.count("\n") == 1
    assert "--allow-synthetic" in err and "ALLOW_SYNTHETIC=1" in err
    assert main(["--dir", str(tmp_path / "cli"), "--weights-dir", str(copied), "--allow-synthetic"]) == 0
    assert "synthetic random values: a test deployment only" in capsys.readouterr().err
    staged = sorted(p.name for p in (tmp_path / "cli" / "weights").iterdir())
    assert staged == sorted(p.name for p in copied.iterdir())

    result = make("stage", f"STAGE_DIR={tmp_path / 'make'}", f"WEIGHTS_DIR={copied}")
    assert result.returncode != 0 and "are synthetic random weights" in result.stderr
    result = make("stage", f"STAGE_DIR={tmp_path / 'make'}", f"WEIGHTS_DIR={copied}", "ALLOW_SYNTHETIC=1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "make" / "weights" / "yolox_s.pth").is_file()


def test_stage_refusal_of_synthetic_weights_gives_advice_that_works_as_printed(
    weights_dir: Path,
    unmarked_weights_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """make stage on the CPU files' synthetic weights: the error names WEIGHTS_DIR= as typed, and its
    download command, followed literally, replaces them with the official files, so the same make stage
    then stages them (it verified the synthetic ones in place and the refusal came again)."""
    from official_downloads import fake_official_downloads

    from alphapose.weights import download as weights
    from tools.stage import main

    copied = tmp_path / "synthetic-weights"  # what make serve-synthetic DETECTOR=yolox-s writes
    copied.mkdir()
    for name in ("yolox_s.pth", "fast_res50_256x192.pth"):
        shutil.copyfile(weights_dir / name, copied / name)
    stage_argv = ["--make", "--dir", str(tmp_path / "staged"), "--file", "function.yaml"]
    stage_argv += ["--weights-dir", str(copied)]
    # make stage passes --make, which names make's variables
    assert re.search(
        r"-m tools\.stage --make .*--file function\.yaml --weights-dir weights", make("-n", "stage").stdout
    )
    assert main(stage_argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: WEIGHTS_DIR={copied}: ") and err.count("\n") == 1, err
    (make_hint,) = re.findall(r"`(make weights [^`]+)`", err)
    (module_hint,) = re.findall(r"`(python -m alphapose\.weights [^`]+)`", err)
    # the make hint runs the module hint's command
    dry_run = make("-n", *make_hint.split()[1:])
    assert f"-m {module_hint.removeprefix('python -m ')}\n" in dry_run.stdout, dry_run.stdout
    fetched = fake_official_downloads(monkeypatch, unmarked_weights_dir)
    assert weights.main(module_hint.split()[3:]) == 0
    assert sorted(fetched) == ["fast_res50_256x192.pth", "yolox_s.pth"]
    assert "replacing it with the official file" in capsys.readouterr().err
    assert main(stage_argv) == 0
    assert "synthetic" not in capsys.readouterr().err

    assert main([*stage_argv[:4], "nosuch.yaml"]) == 2
    assert capsys.readouterr().err.startswith("error: FUNCTION_FILE=nosuch.yaml: unknown function file")


@pytest.mark.slow  # a subprocess or two of several seconds: make test-slow (CI runs both)
def test_base_image_weights_step_refuses_synthetic_files_unless_the_build_arg_allows_them(
    weights_dir: Path, tmp_path: Path
) -> None:
    """Dockerfile.base's weights step, run here as docker would run it, on synthetic files in ./weights."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    command = re.search(r"cd /tmp/src\s+&& (python -m alphapose\.weights .*?)\s+&& rm -rf", text).group(1)
    command = command.replace("/tmp/src/weights", str(weights_dir))
    command = command.replace("python ", f"{sys.executable} ", 1)
    env = {
        **os.environ,
        "ALPHAPOSE_WEIGHTS_DIR": str(tmp_path / "image"),
        "WEIGHTS_PRESETS": "fastpose_res50_coco",
        "WEIGHTS_DETECTORS": "yolov3-spp",
    }

    def build(allow: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", command],
            cwd=ROOT,
            env={**env, "ALLOW_SYNTHETIC_WEIGHTS": allow},
            capture_output=True,
            text=True,
        )

    refused = build("")
    assert refused.returncode == 1 and "holds synthetic random weights" in refused.stderr
    assert not (tmp_path / "image").exists()
    allowed = build("1")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.count("(synthetic)") == 2
    assert "--build-arg ALLOW_SYNTHETIC_WEIGHTS=1" in make("-n", "base-image", "ALLOW_SYNTHETIC=1").stdout
    assert "ALLOW_SYNTHETIC_WEIGHTS" not in make("-n", "base-image").stdout


def test_readme_tells_how_the_sdk_function_answers_what_the_function_files_run() -> None:
    """The SDK function's defaults are the library's; the README gives the parameters that make it run
    what the CPU and GPU function files set (read from the files, so a change of either shows here)."""
    section = (ROOT / "README.md").read_text().split("## Without Nuclio")[1].split("\n## ")[0]
    section = " ".join(section.split())  # line breaks inside the sentences
    cpu, gpu = env_of(load("function.yaml")), env_of(load("function-gpu.yaml"))
    assert f"-p detector=str:{cpu['ALPHAPOSE_DETECTOR']} -p engine=str:{cpu['ALPHAPOSE_ENGINE']}" in section
    assert f"-p detector=str:{gpu['ALPHAPOSE_DETECTOR']} -p device=str:cuda" in section
    assert f"left alone it runs the `{DEFAULT_DETECTOR}` detector in `{DEFAULT_ENGINE}`" in section


def test_video_benchmark_runs_what_the_cpu_function_file_runs() -> None:
    """bench/README.md says bench.video measures the CPU function files' configuration: its preset,
    detector and engine are function.yaml's (read from the file), and --engine picks another."""
    from bench import video

    env = env_of(load("function.yaml"))
    assert (env["ALPHAPOSE_PRESET"], env["ALPHAPOSE_DETECTOR"]) == (video.PRESET, video.DETECTOR)
    assert video.engine_for(None, "cpu") == env["ALPHAPOSE_ENGINE"]
    assert video.engine_for("torch", "cpu") == "torch"
    assert video.engine_for(None, "cuda") == "torch"  # the runtimes run on the CPU only


def test_stage_with_calibration_frames_builds_an_int8_cpu_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The team's frames travel with the function; its image installs the quantizer and quantizes both
    networks on them in OpenVINO while it is built, and the function runs int8 on them."""
    from PIL import Image

    from tools.stage import main, stage

    frames = tmp_path / "frames"
    frames.mkdir()
    for n in range(2):
        Image.new("RGB", (64, 48), (40 * n, 90, 200)).save(frames / f"frame{n}.jpg")
    (frames / "README.txt").write_text("not a frame: not staged")
    assert stage(tmp_path / "int8", "function.yaml", tmp_path / "no-weights", calibration=frames) == []
    staged = tmp_path / "int8"
    assert sorted(p.name for p in (staged / "calibration").iterdir()) == ["frame0.jpg", "frame1.jpg"]
    doc = yaml.safe_load((staged / "function.yaml").read_text())
    env = env_of(doc)
    assert env["ALPHAPOSE_PRECISION"] == "int8" and env["ALPHAPOSE_ENGINE"] == "openvino"
    assert env["ALPHAPOSE_CALIBRATION_DIR"] == "/opt/nuclio/calibration"
    directives = doc["spec"]["build"]["directives"]
    (install, _download) = (d["value"] for d in directives["preCopy"])
    assert "nncf==" in install and "openvino==" in install
    assert [d["value"] for d in directives["postCopy"]][-1] == (
        "cd /opt/nuclio && python -m alphapose.engines --engine openvino --preset fastpose_res50_coco "
        "--detector yolox-s --dir /opt/alphapose/weights --precision int8 "
        "--calibration /opt/nuclio/calibration"
    )
    # what the image's build step runs parses as the function's settings
    from alphapose.cvat.settings import Config

    config = Config.from_env({e["name"]: e["value"] for e in doc["spec"]["env"]})
    assert config.options.precision == "int8" and str(config.options.calibration) == "/opt/nuclio/calibration"
    # a GPU file, or a folder without frames, is refused naming the flag
    assert (
        main(["--dir", str(tmp_path / "gpu"), "--file", "function-gpu.yaml", "--calibration", str(frames)])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: --calibration") and "int8 runs on the CPU only" in err
    assert main(["--dir", str(tmp_path / "none"), "--calibration", str(tmp_path / "missing")]) == 2
    assert f"error: --calibration '{tmp_path / 'missing'}': no such directory" in capsys.readouterr().err
