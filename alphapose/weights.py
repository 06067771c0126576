"""Download and verify the official weights: ``python -m alphapose.weights``.

Every file is checked three ways before it is used or published under its official name: its size
(exact for the darknet file, at least the raw tensor bytes for a checkpoint), its format (a strict
load into our networks) and its sha256 against ``alphapose/data/weights.sha256``. A file whose sha256
is not recorded yet passes with a note saying how to record it; a recorded one that differs fails.

Downloads go to ``<name>.download`` next to the final file (gdown resumes its own partial file there)
and are renamed with ``os.replace`` only after verification, so a file under an official name is
always complete. Google Drive is the only official source of these files.

Usage: ``python -m alphapose.weights [--preset NAME|all ...] [--dir DIR] [--verify] [--record]
[--copy-from DIR] [--checksums FILE]``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import gdown
import requests

from alphapose.build import expected_shapes, load_detector, load_pose_model
from alphapose.errors import WeightsError
from alphapose.models.darknet import DARKNET_WEIGHTS_BYTES
from alphapose.presets import DEFAULT_PRESET, DETECTOR_WEIGHTS, PRESETS, PosePreset

CHECKSUM_FILE = Path(__file__).resolve().parent / "data" / "weights.sha256"
DEFAULT_WEIGHTS_DIR = Path("weights")
STAGING_SUFFIX = ".download"
ALL_PRESETS = "all"

_CHECKSUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_FLOAT_BYTES = 4
_DOWNLOAD_RETRIES = 3
_DOWNLOAD_TIMEOUT = (15.0, 60.0)  # seconds to connect, seconds between bytes
_DOWNLOAD_ERRORS = (gdown.exceptions.DownloadError, requests.RequestException, OSError)


@dataclass(frozen=True)
class WeightsSource:
    """Where an official file is published (AlphaPose's model zoo links to Google Drive)."""

    drive_id: str

    @property
    def url(self) -> str:
        return f"https://drive.google.com/uc?id={self.drive_id}"


SOURCES: dict[str, WeightsSource] = {
    DETECTOR_WEIGHTS: WeightsSource("1D47msNOOiJKvPOXlnpyzdKA3k6E97NTC"),
    "fast_res50_256x192.pth": WeightsSource("1kQhnMRURFiy7NsdS8EFL-8vtqEXOgECn"),
    "halpe26_fast_res50_256x192.pth": WeightsSource("1S-ROA28de-1zvLv-hVfPFJ5tFBYOSITb"),
    "simple_res50_256x192.pth": WeightsSource("1nxyfUbvWDaaT9eDM7Y31ScSVPlGy6gfw"),
    "fast_dcn_res50_256x192.pth": WeightsSource("1zUz9YIk6eALCbZrukxD7kQ554nhi1pVv"),
}


@dataclass(frozen=True)
class VerifiedFile:
    """A file that passed the size and format checks; ``recorded`` tells whether its sha256 was known."""

    name: str
    path: Path
    sha256: str
    recorded: bool


def required_files(presets: Iterable[str]) -> list[str]:
    """The detector plus each preset's checkpoint, in a stable order without duplicates."""
    names = [DETECTOR_WEIGHTS]
    for preset in presets:
        checkpoint = _preset_named(preset).checkpoint
        if checkpoint not in names:
            names.append(checkpoint)
    return names


def expand_presets(names: Sequence[str]) -> list[str]:
    """Preset names from the command line, with ``all`` standing for every preset."""
    if ALL_PRESETS in names:
        return list(PRESETS)
    return [_preset_named(name).name for name in names]


def read_checksums(path: Path = CHECKSUM_FILE) -> dict[str, str]:
    """``{file name: sha256}`` from a sha256sum-format file; ``#`` lines are comments, as for sha256sum."""
    if not path.is_file():
        return {}
    checksums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _CHECKSUM_LINE.match(line)
        if match is None:
            raise WeightsError(
                f"{path}:{number}: not a sha256sum line ('<64 hex digits>  <file name>'): {line!r}"
            )
        checksums[match.group(2)] = match.group(1).lower()
    return checksums


def record_checksums(files: Iterable[VerifiedFile], path: Path = CHECKSUM_FILE) -> list[VerifiedFile]:
    """Append the sha256 of files not recorded yet to ``path``; returns the files it recorded."""
    known = read_checksums(path)
    new = [f for f in files if f.name not in known]
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        separator = "\n" if text and not text.endswith("\n") else ""
        with path.open("a", encoding="utf-8") as out:
            out.write(separator + "".join(f"{f.sha256}  {f.name}\n" for f in new))
    return new


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def minimum_size(name: str) -> int:
    """Bytes an intact file has at least: the darknet file's exact size, a checkpoint's raw tensor bytes."""
    if name == DETECTOR_WEIGHTS:
        return DARKNET_WEIGHTS_BYTES
    shapes = expected_shapes(_preset_for_checkpoint(name))
    return _FLOAT_BYTES * sum(math.prod(shape) for key, shape in shapes.items() if "num_batches" not in key)


def verify_file(path: Path, checksums: Mapping[str, str], name: str | None = None) -> VerifiedFile:
    """Check size, sha256 (when recorded) and format of ``path`` holding the official file ``name``.

    ``name`` defaults to the file's own name; a download is checked under its staging name.
    Raises :class:`WeightsError` saying what is wrong and what to do about it.
    """
    name = name or path.name
    if name not in SOURCES:
        raise ValueError(f"{name} is not one of the official files: {', '.join(SOURCES)}")
    if not path.is_file():
        raise WeightsError(_missing_message(name, path.parent))
    _check_size(path, name)
    digest = sha256_of(path)
    recorded = checksums.get(name)
    if recorded is not None and recorded != digest:
        raise WeightsError(
            f"{path}: sha256 {digest} differs from the recorded {recorded} for {name}. The file is corrupt "
            f"or not the official one: delete it and download it again from {SOURCES[name].url}"
        )
    _check_format(path, name)
    return VerifiedFile(name=name, path=path, sha256=digest, recorded=recorded is not None)


def download_file(name: str, directory: Path, checksums: Mapping[str, str]) -> VerifiedFile:
    """Fetch one official file into ``directory``, verify it, then publish it under its own name."""
    source = SOURCES[name]
    directory.mkdir(parents=True, exist_ok=True)
    staging = _staging_path(directory, name)
    try:
        gdown.download(
            url=source.url,
            output=str(staging),
            quiet=False,
            resume=True,
            retries=_DOWNLOAD_RETRIES,
            timeout=_DOWNLOAD_TIMEOUT,
        )
    except _DOWNLOAD_ERRORS as exc:
        raise WeightsError(
            f"download of {name} from {source.url} failed: {exc}\n"
            f"Running the same command again resumes it. To place the file by hand, open {source.url} "
            f"in a browser, save the file as {directory / name} and check it with "
            f"`python -m alphapose.weights --verify --dir {directory}`."
        ) from exc
    return _publish(staging, name, directory, checksums)


def copy_file(source: Path, directory: Path, checksums: Mapping[str, str]) -> VerifiedFile:
    """Take an official file from another directory (an earlier download), verified like a download."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = _staging_path(directory, source.name)
    shutil.copyfile(source, staging)
    return _publish(staging, source.name, directory, checksums)


def ensure_weights(
    directory: Path,
    presets: Iterable[str] = (DEFAULT_PRESET,),
    checksum_file: Path = CHECKSUM_FILE,
    download: bool = True,
    copy_from: Path | None = None,
) -> list[VerifiedFile]:
    """Verify the files the presets need; with ``download``, first fetch the missing ones.

    A missing file is copied from ``copy_from`` when it holds it, else downloaded. Every file is
    tried; a :class:`WeightsError` at the end lists all the problems found.
    """
    checksums = read_checksums(checksum_file)
    verified, problems = [], []
    for name in required_files(presets):
        try:
            if not download or (directory / name).exists():
                verified.append(verify_file(directory / name, checksums))
            elif copy_from is not None and (copy_from / name).is_file():
                verified.append(copy_file(copy_from / name, directory, checksums))
            else:
                verified.append(download_file(name, directory, checksums))
        except WeightsError as exc:
            problems.append(str(exc))
    if problems:
        raise WeightsError("\n\n".join(problems))
    return verified


def _staging_path(directory: Path, name: str) -> Path:
    return directory / f"{name}{STAGING_SUFFIX}"


def _publish(staging: Path, name: str, directory: Path, checksums: Mapping[str, str]) -> VerifiedFile:
    """Verify a fetched file under its staging name, then rename it atomically; a bad one is deleted."""
    try:
        verified = verify_file(staging, checksums, name=name)
    except WeightsError:
        staging.unlink(missing_ok=True)
        raise
    final = directory / name
    os.replace(staging, final)
    return replace(verified, path=final)


def _check_size(path: Path, name: str) -> None:
    size, expected = path.stat().st_size, minimum_size(name)
    if name == DETECTOR_WEIGHTS and size != expected:
        problem = (
            f"{size:,} bytes, the official {name} has exactly {expected:,}: "
            f"{'truncated (interrupted download?)' if size < expected else 'not the YOLOv3-SPP file'}"
        )
    elif size < expected:
        problem = (
            f"{size:,} bytes, too small for {name} (its tensors alone take {expected:,}): "
            "truncated (interrupted download?)"
        )
    else:
        return
    raise WeightsError(f"{path}: {problem}. Delete it and download it again from {SOURCES[name].url}")


def _check_format(path: Path, name: str) -> None:
    """A strict load: every key and shape must match the network (the loaders name what differs)."""
    if name == DETECTOR_WEIGHTS:
        load_detector(path)
    else:
        load_pose_model(_preset_for_checkpoint(name), path)


def _missing_message(name: str, directory: Path) -> str:
    url = SOURCES[name].url
    preset = "" if name == DETECTOR_WEIGHTS else f" --preset {_preset_for_checkpoint(name)}"
    return (
        f"missing {directory / name}. Download it with "
        f"`python -m alphapose.weights{preset} --dir {directory}`, "
        f"or by hand: open {url} in a browser and save the file as {directory / name}."
    )


def _preset_named(name: str) -> PosePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise WeightsError(
            f"unknown preset {name!r}; choose {ALL_PRESETS} or one of: {', '.join(PRESETS)}"
        ) from None


def _preset_for_checkpoint(name: str) -> str:
    return next(preset.name for preset in PRESETS.values() if preset.checkpoint == name)


def _report(files: Sequence[VerifiedFile], recorded_now: Sequence[VerifiedFile], record_command: str) -> None:
    fresh = {f.name for f in recorded_now}
    for f in files:
        state = "recorded" if f.recorded else "recorded now" if f.name in fresh else "not recorded"
        print(f"ok  {f.path}  sha256 {f.sha256} ({state})")
    unknown = [f for f in files if not f.recorded and f.name not in fresh]
    if unknown:
        print(
            f"{len(unknown)} file(s) passed the size and format checks but their sha256 is not recorded. "
            f"If they came from the official source, record them with:\n  {record_command}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alphapose.weights", description="Download and verify the official AlphaPose weights."
    )
    parser.add_argument(
        "--preset",
        action="append",
        metavar="NAME",
        help=f"pose preset whose checkpoint is needed (repeatable), or '{ALL_PRESETS}'; default: "
        f"$ALPHAPOSE_PRESET or {DEFAULT_PRESET}. The detector is always included. "
        f"Presets: {', '.join(PRESETS)}",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("ALPHAPOSE_WEIGHTS_DIR") or DEFAULT_WEIGHTS_DIR),
        help="weights directory (default: $ALPHAPOSE_WEIGHTS_DIR or ./weights)",
    )
    parser.add_argument(
        "--verify", action="store_true", help="only verify the files present; download nothing"
    )
    parser.add_argument(
        "--record", action="store_true", help="record the sha256 of verified files not yet known"
    )
    parser.add_argument(
        "--copy-from",
        type=Path,
        metavar="DIR",
        help="take missing files from DIR when it has them (verified like downloads) instead of downloading",
    )
    parser.add_argument(
        "--checksums",
        type=Path,
        default=CHECKSUM_FILE,
        help=f"sha256sum-format file (default: {CHECKSUM_FILE})",
    )
    args = parser.parse_args(argv)
    try:
        presets = expand_presets(args.preset or [os.environ.get("ALPHAPOSE_PRESET") or DEFAULT_PRESET])
        files = ensure_weights(
            args.dir, presets, args.checksums, download=not args.verify, copy_from=args.copy_from
        )
        recorded_now = record_checksums(files, args.checksums) if args.record else []
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    command = ["python -m alphapose.weights --verify --record", *(f"--preset {p}" for p in presets)]
    command.append(f"--dir {args.dir}")
    if args.checksums != CHECKSUM_FILE:
        command.append(f"--checksums {args.checksums}")
    _report(files, recorded_now, " ".join(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
