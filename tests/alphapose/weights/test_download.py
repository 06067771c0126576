"""Weights download and verification: size, strict format, sha256, atomic resumable downloads, messages.

Every test works on official-format synthetic files (the session fixture ``weights_dir``), on the same
files without the synthetic writer's mark (``unmarked_weights_dir``, standing for downloaded files), or
on copies, truncations and symlinks of them in a temporary directory; gdown is replaced, so nothing
touches the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gdown
import pytest
import requests
import torch
from official_downloads import fake_official_downloads
from repo_paths import REPO

from alphapose.detection.detectors import DETECTORS
from alphapose.errors import UnknownNameError, WeightsError
from alphapose.pose.presets import PRESETS
from alphapose.weights import download as weights
from alphapose.weights.download import (
    copy_file,
    download_file,
    ensure_weights,
    expand,
    is_synthetic,
    minimum_size,
    official_file,
    record_checksums,
    required_files,
    verify_file,
)
from alphapose.weights.files import read_checksums

DETECTOR_WEIGHTS = "yolov3-spp.weights"  # the official file name (alphapose/detection/detectors.py)

COCO = PRESETS["fastpose_res50_coco"]
HALPE = PRESETS["fastpose_res50_halpe26"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def link(source: Path, directory: Path, name: str | None = None) -> Path:
    """Place ``source`` in ``directory`` (under ``name``) without copying hundreds of megabytes."""
    target = directory / (name or source.name)
    target.symlink_to(source)
    return target


def no_checksums(tmp_path: Path) -> Path:
    return tmp_path / "absent.sha256"


def url(name: str) -> str:
    return official_file(name).url


def test_every_preset_and_detector_file_has_an_official_source() -> None:
    # The Google Drive ids of AlphaPose's docs/MODEL_ZOO.md and its detector download link.
    assert url("fast_res50_256x192.pth") == "https://drive.google.com/uc?id=1kQhnMRURFiy7NsdS8EFL-8vtqEXOgECn"
    assert url(DETECTOR_WEIGHTS) == "https://drive.google.com/uc?id=1D47msNOOiJKvPOXlnpyzdKA3k6E97NTC"
    names = [p.checkpoint.name for p in PRESETS.values()] + [d.weights.name for d in DETECTORS.values()]
    assert len(set(names)) == len(names)
    assert all(url(name).startswith("https://") for name in names)
    with pytest.raises(WeightsError, match="not one of the official files"):
        official_file("model.pth")


def test_required_files_are_the_detector_then_each_checkpoint_once() -> None:
    files = required_files(["fastpose_res50_halpe26", "fastpose_res50_coco", "fastpose_res50_halpe26"])
    assert [f.name for f in files] == [DETECTOR_WEIGHTS, HALPE.checkpoint.name, COCO.checkpoint.name]
    assert expand(["all"], PRESETS, "preset") == list(PRESETS)
    with pytest.raises(UnknownNameError, match="fastpose_res50_coco"):
        expand(["fastpose"], PRESETS, "preset")


def test_checkpoint_minimum_size_is_a_tight_lower_bound(weights_dir: Path) -> None:
    # A real checkpoint is its float32 tensors plus a little pickle/zip overhead: losing 1% must fail.
    actual = (weights_dir / COCO.checkpoint.name).stat().st_size
    assert minimum_size(COCO.checkpoint.name) <= actual < minimum_size(COCO.checkpoint.name) * 1.01
    assert minimum_size(DETECTOR_WEIGHTS) == (weights_dir / DETECTOR_WEIGHTS).stat().st_size == 252_209_544


@pytest.mark.slow
def test_good_files_verify_and_their_sha256_can_be_recorded(
    unmarked_weights_dir: Path, tmp_path: Path
) -> None:
    checksums = tmp_path / "weights.sha256"
    checksums.write_text("# official files\n")
    weights_dir = directory = unmarked_weights_dir
    files = ensure_weights(directory, required_files(["fastpose_res50_coco"]), checksums, download=False)
    assert [(f.name, f.state) for f in files] == [
        (DETECTOR_WEIGHTS, "unrecorded"),
        (COCO.checkpoint.name, "unrecorded"),
    ]
    assert [f.sha256 for f in files] == [sha256(weights_dir / f.name) for f in files]

    assert record_checksums(files, checksums) == files
    assert record_checksums(files, checksums) == []  # already known: nothing appended twice
    assert read_checksums(checksums) == {f.name: f.sha256 for f in files}
    # The file is in sha256sum's own format: the standard tool checks the directory with it.
    check = subprocess.run(
        ["sha256sum", "--check", str(checksums)], cwd=weights_dir, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 2

    again = verify_file(weights_dir / COCO.checkpoint.name, read_checksums(checksums))
    assert again.recorded


def test_truncated_checkpoint_fails_on_size(weights_dir: Path, tmp_path: Path) -> None:
    data = (weights_dir / COCO.checkpoint.name).read_bytes()
    truncated = tmp_path / COCO.checkpoint.name
    truncated.write_bytes(data[: len(data) - 1_000_000])
    with pytest.raises(WeightsError, match=r"too small.*truncated") as error:
        verify_file(truncated, {})
    assert str(truncated) in str(error.value)
    assert f"download it again from {url(COCO.checkpoint.name)}" in str(error.value)


@pytest.mark.parametrize(("delta", "reason"), [(-4, "truncated"), (4, "not the YOLOv3-SPP file")])
def test_detector_must_have_the_exact_size(tmp_path: Path, delta: int, reason: str) -> None:
    path = tmp_path / DETECTOR_WEIGHTS
    with path.open("wb") as file:
        file.truncate(252_209_544 + delta)
    with pytest.raises(WeightsError, match=f"exactly 252,209,544: {reason}"):
        verify_file(path, {})


def test_checkpoint_of_another_preset_names_the_preset_it_fits(weights_dir: Path, tmp_path: Path) -> None:
    wrong = link(weights_dir / HALPE.checkpoint.name, tmp_path, COCO.checkpoint.name)
    with pytest.raises(WeightsError, match="fastpose_res50_halpe26") as error:
        verify_file(wrong, {})
    assert "fastpose_res50_coco" in str(error.value)


def test_recorded_checksum_mismatch_fails_loudly(unmarked_weights_dir: Path, tmp_path: Path) -> None:
    checksums = tmp_path / "weights.sha256"
    checksums.write_text(f"{'0' * 64}  {COCO.checkpoint.name}\n")
    actual = sha256(unmarked_weights_dir / COCO.checkpoint.name)
    with pytest.raises(WeightsError, match="differs from the recorded") as error:
        verify_file(unmarked_weights_dir / COCO.checkpoint.name, read_checksums(checksums))
    assert actual in str(error.value)
    assert "0" * 64 in str(error.value)


def test_malformed_checksum_file_names_the_line(tmp_path: Path) -> None:
    checksums = tmp_path / "weights.sha256"
    checksums.write_text(f"# comment\n{'a' * 64}  {DETECTOR_WEIGHTS}\nnot a checksum\n")
    with pytest.raises(WeightsError, match=r"weights\.sha256:3: not a sha256sum line"):
        read_checksums(checksums)


def test_missing_files_are_all_reported_with_url_and_place(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as error:
        ensure_weights(
            tmp_path, required_files(["fastpose_res50_halpe26"]), no_checksums(tmp_path), download=False
        )
    message = str(error.value)
    for name in (DETECTOR_WEIGHTS, HALPE.checkpoint.name):
        assert f"missing {tmp_path / name}" in message
        assert url(name) in message
        assert f"save the file as {tmp_path / name}" in message
    assert f"make weights PRESET=fastpose_res50_halpe26 WEIGHTS_DIR={tmp_path}" in message
    assert f"make weights DETECTOR=yolov3-spp WEIGHTS_DIR={tmp_path}" in message


@pytest.mark.parametrize(
    "name", [pytest.param(DETECTOR_WEIGHTS, marks=pytest.mark.slow), "yolox_s.pth", COCO.checkpoint.name]
)
def test_synthetic_files_carry_their_mark_wherever_they_are_copied(
    name: str, weights_dir: Path, unmarked_weights_dir: Path, tmp_path: Path
) -> None:
    """The mark is inside the file: a copy alone in another directory, or under a staging name, is still
    synthetic, is never recorded, and a record of its sha256 made by mistake is an error."""
    assert sorted(p.name for p in weights_dir.iterdir()) == sorted(
        [DETECTOR_WEIGHTS, "yolox_s.pth", COCO.checkpoint.name, HALPE.checkpoint.name]
    )  # nothing beside the files says what they are
    copy = tmp_path / "elsewhere" / f"{name}.download"  # alone, under a staging name
    copy.parent.mkdir()
    shutil.copyfile(weights_dir / name, copy)
    assert is_synthetic(copy, name)
    verified = verify_file(copy, {}, name=name)
    assert (verified.state, verified.recorded) == ("synthetic", False)
    with pytest.raises(WeightsError, match="refusing to record synthetic files"):
        record_checksums([verified], tmp_path / "never-written.sha256")
    assert not (tmp_path / "never-written.sha256").exists()
    with pytest.raises(WeightsError, match=f"synthetic random weights.*recorded as the official {name}"):
        verify_file(copy, {name: verified.sha256}, name=name)
    assert not is_synthetic(unmarked_weights_dir / name)
    assert verify_file(unmarked_weights_dir / name, {}).state == "unrecorded"


def test_copy_from_refuses_synthetic_files_unless_allowed(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """How the GPU base image takes local files: random weights must not become an image by accident."""
    files = required_files([COCO.name])
    with pytest.raises(WeightsError) as refused:
        ensure_weights(tmp_path / "image", files, no_checksums(tmp_path), copy_from=weights_dir)
    for name in (DETECTOR_WEIGHTS, COCO.checkpoint.name):
        assert f"--copy-from: {weights_dir / name} holds synthetic random weights" in str(refused.value)
    assert "--allow-synthetic" in str(refused.value)
    assert not (tmp_path / "image").exists()  # refused before anything is written

    args = ["--dir", str(tmp_path / "image"), "--preset", COCO.name, "--detector", "yolov3-spp"]
    args += ["--copy-from", str(weights_dir), "--checksums", str(no_checksums(tmp_path))]
    assert weights.main(args) == 1
    assert "--allow-synthetic" in capsys.readouterr().err
    assert weights.main([*args, "--allow-synthetic"]) == 0
    assert capsys.readouterr().out.count("(synthetic)") == 2
    assert sorted(p.name for p in (tmp_path / "image").iterdir()) == [COCO.checkpoint.name, DETECTOR_WEIGHTS]


@pytest.mark.slow
def test_a_download_replaces_synthetic_files_in_place_unless_asked_to_keep_them(
    weights_dir: Path,
    unmarked_weights_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A synthetic file is not the official one: the download that advice gives for official files must
    fetch it, not verify the random one in place and stop (the loop make stage's refusal sent users in)."""
    directory = tmp_path / "synthetic-weights"
    directory.mkdir()
    names = ["yolox_s.pth", COCO.checkpoint.name]
    for name in names:
        shutil.copyfile(weights_dir / name, directory / name)
    fetched = fake_official_downloads(monkeypatch, unmarked_weights_dir)
    argv = ["--preset", COCO.name, "--detector", "yolox-s", "--dir", str(directory)]
    argv += ["--checksums", str(no_checksums(tmp_path))]
    # A test image keeps them (--allow-synthetic), and --verify never downloads.
    for kept in ("--allow-synthetic", "--verify"):
        assert weights.main([*argv, kept]) == 0
        assert capsys.readouterr().out.count("(synthetic)") == 2
    assert fetched == []

    # A download that fails leaves the synthetic file as it was.
    def unreachable(url: str, target: Path) -> None:
        raise requests.ConnectionError("no route to host")

    monkeypatch.setattr(weights, "http_download", unreachable)
    monkeypatch.setattr(gdown, "download", FakeGdown(error=gdown.exceptions.DownloadError("reset")))
    assert weights.main(argv) == 1
    assert is_synthetic(directory / "yolox_s.pth")
    capsys.readouterr()

    fetched = fake_official_downloads(monkeypatch, unmarked_weights_dir)
    assert weights.main(argv) == 0
    out, err = capsys.readouterr()
    assert sorted(fetched) == sorted(names)
    for name in names:
        assert (
            f"{directory / name} holds synthetic random weights: replacing it with the official file" in err
        )
        assert not is_synthetic(directory / name)
    assert "(synthetic)" not in out and out.count("(unrecorded)") == 2
    assert not list(directory.glob(f"*{weights.STAGING_SUFFIX}"))  # each replaced atomically


@pytest.mark.slow  # verifies four full-size checkpoints twice
def test_copy_from_refusal_gives_advice_that_works_as_printed(
    weights_dir: Path,
    unmarked_weights_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each refused file's advice names its own preset or detector and the --copy-from directory; run as
    printed, it puts the official files there and the same --copy-from then takes them."""
    for name in ("ALPHAPOSE_PRESET", "ALPHAPOSE_DETECTOR", "ALPHAPOSE_WEIGHTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    source, image = tmp_path / "synthetic-weights", tmp_path / "image"
    source.mkdir()
    for name in ("yolox_s.pth", COCO.checkpoint.name):
        shutil.copyfile(weights_dir / name, source / name)
    argv = ["--copy-from", str(source), "--dir", str(image), "--preset", COCO.name, "--detector", "yolox-s"]
    argv += ["--checksums", str(no_checksums(tmp_path))]
    assert weights.main(argv) == 1
    hints = re.findall(r"`(python -m alphapose\.weights [^`]+)`", capsys.readouterr().err)
    assert len(hints) == 2
    fetched = fake_official_downloads(monkeypatch, unmarked_weights_dir)
    for hint in hints:
        assert weights.main([*hint.split()[3:], "--checksums", str(no_checksums(tmp_path))]) == 0
    assert {"yolox_s.pth", COCO.checkpoint.name} <= set(fetched)  # with the defaults each hint implies
    capsys.readouterr()
    assert weights.main(argv) == 0
    assert "(synthetic)" not in capsys.readouterr().out
    assert not any(is_synthetic(path) for path in image.iterdir())


@pytest.fixture(autouse=True)
def name_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads first check that the host's name resolves; the tests never touch the network."""
    monkeypatch.setattr(weights.socket, "getaddrinfo", lambda host, port: [])


def test_offline_download_says_so_once_and_points_to_synthetic_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unresolvable(host: str, port: int) -> list:
        raise OSError(f"[Errno -3] Temporary failure in name resolution: {host}")

    monkeypatch.setattr(weights.socket, "getaddrinfo", unresolvable)
    monkeypatch.setattr(gdown, "download", FakeGdown(error=AssertionError("never called")))
    with pytest.raises(WeightsError) as raised:
        download_file(COCO.checkpoint, tmp_path, {})
    message = str(raised.value)
    assert "the network is unreachable (drive.google.com does not resolve)" in message
    assert "resumes" not in message
    assert list(tmp_path.iterdir()) == []
    # The offline hint works as printed: a make target, whose commands run in the project's venv (a bare
    # `python -m tools.synthetic_weights` outside it fails without torch).
    (hint,) = re.findall(r"`(make [^`]+)`", message)
    dry_run = subprocess.run([*hint.split(), "-n"], cwd=REPO, capture_output=True, text=True)
    assert dry_run.returncode == 0, dry_run.stderr
    assert ".venv/bin/python -m tools.synthetic_weights build/synthetic-weights" in dry_run.stdout
    assert ".venv/bin/python -m tools serve" in dry_run.stdout


def test_offline_hint_to_place_files_by_hand_works_as_printed(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """For files other than the defaults: the check the message points to verifies the files placed, not
    the default preset's and detector's."""

    def unresolvable(host: str, port: int) -> list:
        raise OSError(f"[Errno -3] Temporary failure in name resolution: {host}")

    monkeypatch.setattr(weights.socket, "getaddrinfo", unresolvable)
    for name in ("ALPHAPOSE_PRESET", "ALPHAPOSE_DETECTOR"):
        monkeypatch.delenv(name, raising=False)
    argv = ["--preset", HALPE.name, "--detector", "yolox-s", "--dir", str(tmp_path), "--checksums", "none"]
    assert weights.main(argv) == 1
    message = capsys.readouterr().err
    for name in ("yolox_s.pth", HALPE.checkpoint.name):
        assert f"save the file as {tmp_path / name} and run the same command again" in message
        # the official file, as saved by hand: the same tensors without the synthetic writer's mark
        state = torch.load(weights_dir / name, weights_only=True)
        unmarked = {"model": dict(state["model"])} if "model" in state else dict(state)
        torch.save(unmarked, tmp_path / name)
    assert weights.main(argv) == 0  # still offline: the files in place are verified
    out = capsys.readouterr().out
    assert f"ok  {tmp_path / HALPE.checkpoint.name}" in out and f"ok  {tmp_path / 'yolox_s.pth'}" in out


class FakeGdown:
    """Stands in for ``gdown.download``: records the call, then writes ``content`` or raises ``error``.

    Like gdown, it writes into ``<output><8 characters>.part`` and moves that to ``output`` at the end.
    """

    def __init__(self, content: Path | bytes | None = None, error: Exception | None = None) -> None:
        self.content, self.error, self.calls = content, error, []

    def __call__(self, **kwargs: object) -> str:
        self.calls.append(kwargs)
        output = str(kwargs["output"])
        part = Path(f"{output}abcd1234.part")
        if self.error is not None:
            part.write_bytes(b"partial")
            raise self.error
        if isinstance(self.content, Path):
            shutil.copyfile(self.content, part)
        else:
            part.write_bytes(self.content or b"")
        os.replace(part, output)
        return output


def test_download_verifies_then_publishes_atomically(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGdown(content=weights_dir / COCO.checkpoint.name)
    monkeypatch.setattr(gdown, "download", fake)
    verified = download_file(COCO.checkpoint, tmp_path, {})
    assert fake.calls[0]["url"] == url(COCO.checkpoint.name)
    assert fake.calls[0]["resume"] is True
    assert str(fake.calls[0]["output"]) != str(tmp_path / COCO.checkpoint.name)  # never written in place
    assert verified.path == tmp_path / COCO.checkpoint.name
    assert verified.sha256 == sha256(weights_dir / COCO.checkpoint.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [COCO.checkpoint.name]


@pytest.mark.parametrize(
    "error",
    [gdown.exceptions.DownloadError("connection reset"), requests.ConnectionError("no route to host")],
)
def test_failed_download_names_the_url_and_leaves_no_file_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr(gdown, "download", FakeGdown(error=error))
    with pytest.raises(WeightsError) as raised:
        ensure_weights(tmp_path, required_files(["fastpose_res50_coco"]), no_checksums(tmp_path))
    message = str(raised.value)
    for name in (DETECTOR_WEIGHTS, COCO.checkpoint.name):
        assert f"download of {name} from {url(name)} failed: {error}" in message
        assert f"save the file as {tmp_path / name}" in message
        assert not (tmp_path / name).exists()
    assert "resumes" in message
    assert len(list(tmp_path.glob("*.part"))) == 2  # kept for the next, resumed attempt


def test_downloaded_file_that_fails_verification_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What Google Drive serves instead of the file when its download quota is exceeded.
    monkeypatch.setattr(gdown, "download", FakeGdown(content=b"<html>Quota exceeded</html>"))
    with pytest.raises(WeightsError, match="too small"):
        download_file(COCO.checkpoint, tmp_path, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_copy_from_another_directory_is_verified_like_a_download(
    weights_dir: Path, unmarked_weights_dir: Path, tmp_path: Path
) -> None:
    verified = copy_file(unmarked_weights_dir / COCO.checkpoint.name, tmp_path / "out", {})
    assert verified.path == tmp_path / "out" / COCO.checkpoint.name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [COCO.checkpoint.name]

    (tmp_path / "bad").mkdir()
    link(weights_dir / HALPE.checkpoint.name, tmp_path / "bad", COCO.checkpoint.name)
    with pytest.raises(WeightsError, match="fastpose_res50_halpe26"):
        copy_file(tmp_path / "bad" / COCO.checkpoint.name, tmp_path / "out2", {}, allow_synthetic=True)
    assert list((tmp_path / "out2").iterdir()) == []


@pytest.mark.slow
def test_command_line_verifies_records_and_then_rejects_a_changed_file(
    weights_dir: Path, unmarked_weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "weights"
    directory.mkdir()
    checksums = tmp_path / "weights.sha256"
    args = ["--verify", "--dir", str(directory), "--preset", COCO.name, "--checksums", str(checksums)]
    # Copies of synthetic files are reported as such and never recorded.
    for name in (DETECTOR_WEIGHTS, COCO.checkpoint.name):
        shutil.copyfile(weights_dir / name, directory / name)
    assert weights.main([*args, "--record"]) == 1
    assert "refusing to record synthetic files" in capsys.readouterr().err
    assert weights.main(args) == 0
    assert "(synthetic)" in capsys.readouterr().out
    for name in (DETECTOR_WEIGHTS, COCO.checkpoint.name):  # the same tensors without the mark
        (directory / name).unlink()
        link(unmarked_weights_dir / name, directory)

    assert weights.main(args) == 0
    out = capsys.readouterr().out
    assert "(unrecorded)" in out
    assert f"--preset {COCO.name} --detector yolov3-spp --dir {directory} --checksums {checksums}" in out
    assert not checksums.exists()

    assert weights.main([*args, "--record"]) == 0
    assert "recorded now" in capsys.readouterr().out
    assert set(read_checksums(checksums)) == {DETECTOR_WEIGHTS, COCO.checkpoint.name}

    # The same name now holds another file: the recorded sha256 no longer matches.
    (directory / COCO.checkpoint.name).unlink()
    state = torch.load(unmarked_weights_dir / COCO.checkpoint.name, weights_only=True)
    state = {key: value + 1 if value.is_floating_point() else value for key, value in state.items()}
    torch.save(state, directory / COCO.checkpoint.name)
    assert weights.main(args) == 1
    assert "differs from the recorded" in capsys.readouterr().err
    # A synthetic file there is called synthetic (the offline trial works whatever is recorded).
    (directory / COCO.checkpoint.name).unlink()
    link(weights_dir / COCO.checkpoint.name, directory)
    assert weights.main(args) == 0
    assert f"{directory / COCO.checkpoint.name}  sha256" in capsys.readouterr().out


def test_main_names_a_file_given_as_dir_or_a_checksums_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each was an exception's traceback (mkdir on a file, a binary file decoded as text)."""
    not_a_dir = tmp_path / "weights.txt"
    not_a_dir.write_text("x")
    assert weights.main(["--dir", str(not_a_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --dir {not_a_dir}: {not_a_dir} is a file"), err
    assert weights.main(["--dir", str(not_a_dir / "sub")]) == 1  # a file above it: mkdir's traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"error: --dir {not_a_dir / 'sub'}: {not_a_dir} is a file"
    ), err
    monkeypatch.setenv("ALPHAPOSE_WEIGHTS_DIR", str(not_a_dir))  # named as the user set it
    assert weights.main([]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: ALPHAPOSE_WEIGHTS_DIR {not_a_dir}: {not_a_dir} is a file"
    )
    binary = tmp_path / "sums.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    assert weights.main(["--verify", "--dir", str(tmp_path), "--checksums", str(binary)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot read {binary} as a sha256sum file"), err


def test_main_names_the_flag_of_a_directory_it_cannot_write_or_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --dir it may not write (or a --copy-from file it may not read) was mkdir's or open's traceback."""
    target, source = tmp_path / "weights", tmp_path / "official"
    for denied, start in (
        (target / "yolov3-spp.weights", f"--dir {target}"),
        (source / "a.pth", f"--copy-from {source}"),
    ):

        def refuse(*args: object, denied: Path = denied, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", str(denied))

        monkeypatch.setattr(weights, "ensure_weights", refuse)
        assert weights.main(["--dir", str(target), "--copy-from", str(source)]) == 1
        err = capsys.readouterr().err
        assert err == f"error: {start}: {denied}: Permission denied\n", err


def test_ctrl_c_is_one_line_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while PyTorch imports, or during a download, was KeyboardInterrupt's traceback."""

    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "alphapose.weights.download", SimpleNamespace(main=interrupted))
    with pytest.raises((SystemExit, KeyboardInterrupt)) as stopped:  # one escaping would stop pytest
        runpy.run_module("alphapose.weights", run_name="__main__")
    assert stopped.type is SystemExit and stopped.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["alphapose.weights", "--verify"],
        ["alphapose.engines", "--engine", "torch", "--preset", "p", "--detector", "d", "--dir", "."],
    ],
)
def test_a_python_without_the_requirements_is_told_which_to_use(argv: list[str]) -> None:
    """``python3 -m alphapose.weights`` outside the project's environment was PyTorch's import traceback."""
    script = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None\n"  # as in a Python without the requirements
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {sys.executable} has no torch package: run it with the project's Python "
        f"(.venv/bin/python -m {argv[0]} ..., after make setup), or pip install -r requirements.txt in "
        "this one\n"
    ), result.stderr


@pytest.mark.parametrize(
    ("argv", "environment", "start"),
    [
        (["--preset", "nosuch"], {}, "error: --preset: unknown preset 'nosuch'; choose one of: "),
        (["--detector", "nosuch"], {}, "error: --detector: unknown detector 'nosuch'; choose one of: "),
        ([], {"ALPHAPOSE_PRESET": "nosuch"}, "error: ALPHAPOSE_PRESET: unknown preset 'nosuch'; "),
        ([], {"ALPHAPOSE_DETECTOR": "nosuch"}, "error: ALPHAPOSE_DETECTOR: unknown detector 'nosuch'; "),
    ],
)
def test_main_names_the_flag_or_variable_of_an_unknown_name(
    argv: list[str],
    environment: dict[str, str],
    start: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad command line (status 2), told where the name was typed, before any file is looked at."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert weights.main([*argv, "--verify", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(start), err


def test_a_mistyped_command_line_is_one_line_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own refusals printed the usage text above the error; the error alone, and where the flags
    are listed, is what every other refusal of the command prints."""
    with pytest.raises(SystemExit) as stopped:
        weights.main(["--verify", "--dri", "x"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: unrecognized arguments: --dri x; see python -m alphapose.weights --help\n", err
