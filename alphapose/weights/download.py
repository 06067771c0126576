"""Download and verify the official weights files: ``python -m alphapose.weights``.

Every file is checked before it is used or published under its official name: its size (exact for the
darknet file, at least the raw tensor bytes for a checkpoint), its format (a strict load into our networks)
and its sha256, which gives it one of three states:

* ``recorded``: the sha256 equals the one recorded in ``alphapose/data/weights.sha256`` for that name;
* ``unrecorded``: nothing is recorded for that name yet (a recorded sha256 that differs is an error);
* ``synthetic``: the file was written by ``python -m tools.synthetic_weights`` (random values in the
  official format, for tests and trying the function offline). The writer marks each file inside
  (:func:`mark_synthetic`, :data:`SYNTHETIC_DARKNET_SEEN`), so it is recognised wherever it is copied or
  renamed. Such a file is never recorded, ``--copy-from`` (how the GPU base image takes local files)
  refuses it unless ``--allow-synthetic`` asks for a test image, and a download (no ``--verify``) replaces
  one it finds in place with the official file unless ``--allow-synthetic`` keeps it.

Downloads go to ``<name>.download`` next to the final file and are renamed with ``os.replace`` only after
verification, so a file under an official name is always complete. Google Drive files come through gdown
(a confirmation page stands before large files; gdown resumes its own partial file there), every other
URL (the YOLOX release files on GitHub) through a plain HTTPS download that resumes the staging file with
a range request. The command line lives here, in the library, because the function images run it while
they are built; it needs the ``weights`` extra (gdown, requests) only to download.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import torch

from alphapose.detection.darknet import DARKNET_HEADER_BYTES, DARKNET_WEIGHTS_BYTES
from alphapose.detection.detectors import DEFAULT_DETECTOR, DETECTORS, detector_for_file, get_detector
from alphapose.detection.yolox import expected_shapes as yolox_shapes
from alphapose.errors import CommandLineParser, UnknownNameError, WeightsError, lookup
from alphapose.pose.presets import DEFAULT_PRESET, PRESETS, get_preset, preset_for_checkpoint
from alphapose.weights.files import CHECKSUM_FILE, WeightsFile, read_checksums, sha256_of
from alphapose.weights.load import expected_shapes, load_detector, load_pose_model

if TYPE_CHECKING:
    import requests

DEFAULT_WEIGHTS_DIR = Path("weights")
STAGING_SUFFIX = ".download"
# The marks of synthetic files, inside each file: a key of a PyTorch file's state_dict metadata (which a
# load ignores, and which travels with the tensors), and the "images seen" count of a darknet header (which
# no loader reads; the official file's is a training count far below this one).
SYNTHETIC_MARK = "alphapose.synthetic_weights"
SYNTHETIC_DARKNET_SEEN = int.from_bytes(b"SYNTHETC", "little")
_DARKNET_SEEN_OFFSET = 12  # after the int32 major, minor and revision
ALL = "all"

FileState = Literal["recorded", "unrecorded", "synthetic"]

_FLOAT_BYTES = 4
_HALF_BYTES = 2
_PROGRESS_STEP = 0.05  # print the progress of a plain download every 5 %
_DOWNLOAD_RETRIES = 3
_DOWNLOAD_TIMEOUT = (15.0, 60.0)  # seconds to connect, seconds between bytes


@dataclass(frozen=True)
class VerifiedFile:
    """A file that passed the size and format checks, with what its sha256 says about it."""

    name: str
    path: Path
    sha256: str
    state: FileState

    @property
    def recorded(self) -> bool:
        return self.state == "recorded"


def download_hint(directory: Path, preset: str | None = None, detector: str | None = None) -> str:
    """The commands that fetch a preset's and a detector's files, as they work when typed (a synthetic
    file in the way is replaced: :func:`ensure_weights`)."""
    make = ["make weights"] + [f"PRESET={preset}"] * bool(preset) + [f"DETECTOR={detector}"] * bool(detector)
    module = ["python -m alphapose.weights"] + [f"--preset {preset}"] * bool(preset)
    module += [f"--detector {detector}"] * bool(detector)
    return (
        f"`{' '.join(make)} WEIGHTS_DIR={directory}` in a checkout, or "
        f"`{' '.join(module)} --dir {directory}` where the `weights` extra is installed"
    )


def official_file(name: str) -> WeightsFile:
    """The official file of that name, from the preset and detector tables."""
    preset = preset_for_checkpoint(name)
    if preset is not None:
        return preset.checkpoint
    detector = detector_for_file(name)
    if detector is not None:
        return detector.weights
    known = [d.weights.name for d in DETECTORS.values()] + [p.checkpoint.name for p in PRESETS.values()]
    raise WeightsError(f"{name} is not one of the official files: {', '.join(known)}")


def required_files(
    presets: Iterable[str], detectors: Iterable[str] = (DEFAULT_DETECTOR,)
) -> list[WeightsFile]:
    """The detectors' files, then each preset's checkpoint, in a stable order without duplicates."""
    files = [get_detector(name).weights for name in detectors] + [
        get_preset(name).checkpoint for name in presets
    ]
    return list(dict.fromkeys(files))


def expand(names: Sequence[str], table: Mapping[str, object], what: str) -> list[str]:
    """Names from the command line, with ``all`` standing for every row of the table."""
    if ALL in names:
        return list(table)
    for name in names:
        lookup(table, name, what)  # an unknown name fails here, listing the valid ones
    return list(dict.fromkeys(names))


def record_checksums(files: Iterable[VerifiedFile], path: Path = CHECKSUM_FILE) -> list[VerifiedFile]:
    """Append the sha256 of files not recorded yet to ``path``; returns the files it recorded.

    Synthetic files are refused: recording one would make random weights pass as the official file.
    """
    files = list(files)
    synthetic = [f.name for f in files if f.state == "synthetic"]
    if synthetic:
        raise WeightsError(
            f"refusing to record synthetic files ({', '.join(synthetic)}): record only files downloaded "
            "from their official source"
        )
    known = read_checksums(path)
    new = [f for f in files if f.name not in known]
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        separator = "\n" if text and not text.endswith("\n") else ""
        with path.open("a", encoding="utf-8") as out:
            out.write(separator + "".join(f"{f.sha256}  {f.name}\n" for f in new))
    return new


def mark_synthetic(state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """Mark a module's ``state_dict()`` as random weights before it is saved; returns it."""
    state_dict._metadata[SYNTHETIC_MARK] = {"written_by": "tools.synthetic_weights"}  # type: ignore[attr-defined]
    return state_dict


def is_synthetic(path: Path, name: str | None = None) -> bool:
    """Whether the file at ``path`` (the official file ``name``, default its own name) carries the mark
    of the synthetic weights writer. Only the header or the pickle is read, not the tensors."""
    detector = detector_for_file(name or path.name)
    if detector is not None and detector.family == "yolov3":
        with path.open("rb") as file:
            header = file.read(DARKNET_HEADER_BYTES)
        seen = int.from_bytes(header[_DARKNET_SEEN_OFFSET:DARKNET_HEADER_BYTES], "little", signed=True)
        return len(header) == DARKNET_HEADER_BYTES and seen == SYNTHETIC_DARKNET_SEEN
    if not zipfile.is_zipfile(path):
        return False  # the writer saves in PyTorch's zip format; the official AlphaPose files predate it
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an unreadable file carries no mark; the format check names its fault
        return False
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]  # a YOLOX release file
    return SYNTHETIC_MARK in getattr(state, "_metadata", {})


def minimum_size(name: str) -> int:
    """Bytes an intact file has at least: the darknet file's exact size, a checkpoint's raw tensor bytes
    (a YOLOX release file's at half precision: nothing says its network weights are float32)."""
    detector = detector_for_file(name)
    if detector is not None and detector.family == "yolov3":
        return DARKNET_WEIGHTS_BYTES
    if detector is not None and detector.family == "yolox":
        shapes = yolox_shapes(detector.name)
        elements = sum(math.prod(shape) for key, shape in shapes.items() if "num_batches" not in key)
        return _HALF_BYTES * elements
    preset = preset_for_checkpoint(name)
    if preset is None:
        raise WeightsError(f"{name} is not an official checkpoint")
    shapes = expected_shapes(preset.name)
    return _FLOAT_BYTES * sum(math.prod(shape) for key, shape in shapes.items() if "num_batches" not in key)


def verify_file(path: Path, checksums: Mapping[str, str], name: str | None = None) -> VerifiedFile:
    """Check size, sha256 (when recorded) and format of ``path`` holding the official file ``name``.

    ``name`` defaults to the file's own name; a download is checked under its staging name.
    Raises :class:`WeightsError` saying what is wrong and what to do about it.
    """
    source = official_file(name or path.name)
    if not path.is_file():
        raise WeightsError(_missing_message(source, path.parent))
    _check_size(path, source)
    identified = identify_file(path, checksums, source.name)
    _check_format(path, source.name)
    return identified


def identify_file(path: Path, checksums: Mapping[str, str], name: str | None = None) -> VerifiedFile:
    """What ``path`` is: synthetic (by its mark), else recorded or unrecorded by its sha256 (no size or
    format check).

    A recorded sha256 that differs raises :class:`WeightsError`: the file is corrupt or another one; so
    does a synthetic file whose sha256 is recorded (a record made by mistake). The function runs this at
    start-up on the files it loaded, so its log says what it serves.
    """
    source = official_file(name or path.name)
    digest = sha256_of(path)
    recorded = checksums.get(source.name)
    if is_synthetic(path, source.name):
        if recorded == digest:
            raise WeightsError(
                f"{path} holds synthetic random weights (written by python -m tools.synthetic_weights), yet "
                f"its sha256 is recorded as the official {source.name}: delete the line '{digest}  "
                f"{source.name}' from the checksums file (alphapose/data/weights.sha256 by default)"
            )
        state: FileState = "synthetic"
    elif recorded is not None and recorded != digest:
        raise WeightsError(
            f"{path}: sha256 {digest} differs from the recorded {recorded} for {source.name}. The file is "
            f"corrupt or not the official one: delete it and download it again from {source.url}"
        )
    else:
        state = "recorded" if recorded else "unrecorded"
    return VerifiedFile(name=source.name, path=path, sha256=digest, state=state)


def download_file(source: WeightsFile, directory: Path, checksums: Mapping[str, str]) -> VerifiedFile:
    """Fetch one official file into ``directory``, verify it, then publish it under its own name."""
    import requests  # the weights extra: only downloading needs it

    directory.mkdir(parents=True, exist_ok=True)
    by_hand = (
        f"To place the file by hand, open {source.url} in a browser, save the file as "
        f"{directory / source.name} and run the same command again: it verifies a file in place "
        "instead of downloading it."
    )
    host = urlsplit(source.url).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        raise WeightsError(
            f"cannot download {source.name}: the network is unreachable ({host} does not resolve). "
            f"{by_hand} To try the function offline on random weights in the official format (they find "
            "nothing meaningful), run `make serve-synthetic` in a checkout: it writes them apart from the "
            "official files, in build/synthetic-weights, and serves them."
        ) from None
    staging = _staging_path(directory, source.name)
    try:
        if source.on_google_drive:
            import gdown

            try:
                gdown.download(
                    url=source.url,
                    output=str(staging),
                    quiet=False,
                    resume=True,
                    retries=_DOWNLOAD_RETRIES,
                    timeout=_DOWNLOAD_TIMEOUT,
                )
            except gdown.exceptions.DownloadError as exc:
                raise OSError(str(exc)) from exc
        else:
            http_download(source.url, staging)
    except (requests.RequestException, OSError) as exc:
        raise WeightsError(
            f"download of {source.name} from {source.url} failed: {exc}\n"
            f"Running the same command again resumes it. {by_hand}"
        ) from exc
    return _publish(staging, source.name, directory, checksums)


def http_download(url: str, target: Path, retries: int = _DOWNLOAD_RETRIES) -> None:
    """Download ``url`` to ``target`` over plain HTTP(S), resuming what ``target`` already holds.

    Progress goes to stderr every 5 %. A dropped connection is retried from where it stopped; a server
    that ignores the range request sends the whole file again, which then replaces the partial one.
    """
    import requests

    for attempt in range(1, retries + 1):
        done = target.stat().st_size if target.exists() else 0
        headers = {"Range": f"bytes={done}-"} if done else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=_DOWNLOAD_TIMEOUT) as response:
                if response.status_code == 416:  # the range starts at the end: nothing left to fetch
                    return
                response.raise_for_status()
                if response.status_code != 206:
                    done = 0  # the server sent the whole file
                total = done + int(response.headers.get("Content-Length", 0)) or None
                _stream(response, target, done, total)
            return
        except (requests.ConnectionError, requests.Timeout) as exc:
            if attempt == retries:
                raise
            print(f"{target.name}: {exc}; retrying ({attempt}/{retries - 1})", file=sys.stderr)


def _stream(response: requests.Response, target: Path, done: int, total: int | None) -> None:
    """Append (or write, from byte 0) the body to ``target``, printing the progress."""
    next_report = _PROGRESS_STEP
    with target.open("ab" if done else "wb") as out:
        for chunk in response.iter_content(chunk_size=1 << 20):
            out.write(chunk)
            done += len(chunk)
            if total and done / total >= next_report:
                print(f"{target.name}: {done / 2**20:,.1f} of {total / 2**20:,.1f} MiB", file=sys.stderr)
                next_report = math.floor(done / total / _PROGRESS_STEP) * _PROGRESS_STEP + _PROGRESS_STEP


def copy_file(
    source: Path, directory: Path, checksums: Mapping[str, str], allow_synthetic: bool = False
) -> VerifiedFile:
    """Take an official file from another directory (an earlier download), verified like a download.

    A synthetic file is refused unless ``allow_synthetic``: this is how images take local files, and an
    image of random weights would answer CVAT with random skeletons.
    """
    if not allow_synthetic and source.is_file() and is_synthetic(source):
        raise WeightsError(
            f"--copy-from: {source} holds synthetic random weights (written by python -m "
            "tools.synthetic_weights), not the official file. Put the official file there "
            f"({_file_hint(source.parent, source.name)}: a download replaces a synthetic file) or remove "
            "it to download it; only for a test image, pass --allow-synthetic (make base-image "
            "ALLOW_SYNTHETIC=1)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    staging = _staging_path(directory, source.name)
    shutil.copyfile(source, staging)
    return _publish(staging, source.name, directory, checksums)


def ensure_weights(
    directory: Path,
    files: Sequence[WeightsFile],
    checksum_file: Path = CHECKSUM_FILE,
    download: bool = True,
    copy_from: Path | None = None,
    allow_synthetic: bool = False,
) -> list[VerifiedFile]:
    """Verify ``files`` in ``directory``; with ``download``, first fetch the missing ones.

    A missing file is copied from ``copy_from`` when it holds it (synthetic files only with
    ``allow_synthetic``), else downloaded. With ``download``, a synthetic file in place is not the official
    one, so it is fetched like a missing one and replaced (saying so), unless ``allow_synthetic`` keeps it:
    otherwise the command that advice gives for official files would verify the random ones and stop.
    Every file is tried; a :class:`WeightsError` at the end lists all the problems found.
    """
    checksums = read_checksums(checksum_file)
    verified, problems = [], []
    for source in files:
        path = directory / source.name
        try:
            replace_synthetic = download and not allow_synthetic and path.is_file() and is_synthetic(path)
            if replace_synthetic:
                print(
                    f"{path} holds synthetic random weights: replacing it with the official file",
                    file=sys.stderr,
                )
            if not download or (path.exists() and not replace_synthetic):
                verified.append(verify_file(path, checksums))
            elif copy_from is not None and (copy_from / source.name).is_file():
                verified.append(copy_file(copy_from / source.name, directory, checksums, allow_synthetic))
            else:
                verified.append(download_file(source, directory, checksums))
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


def _check_size(path: Path, source: WeightsFile) -> None:
    size, expected = path.stat().st_size, minimum_size(source.name)
    detector = detector_for_file(source.name)
    exact = detector is not None and detector.family == "yolov3"  # darknet files have no slack
    if exact and size != expected:
        problem = (
            f"{size:,} bytes, the official {source.name} has exactly {expected:,}: "
            f"{'truncated (interrupted download?)' if size < expected else 'not the YOLOv3-SPP file'}"
        )
    elif size < expected:
        problem = (
            f"{size:,} bytes, too small for {source.name} (its tensors alone take {expected:,}): "
            "truncated (interrupted download?)"
        )
    else:
        return
    raise WeightsError(f"{path}: {problem}. Delete it and download it again from {source.url}")


def _check_format(path: Path, name: str) -> None:
    """A strict load: every key and shape must match the network (the loaders name what differs)."""
    preset, detector = preset_for_checkpoint(name), detector_for_file(name)
    if preset is not None:
        load_pose_model(preset, path)
    elif detector is not None:
        load_detector(path, detector=detector.name)


def _file_hint(directory: Path, name: str) -> str:
    """:func:`download_hint` for the official file ``name``: its own preset or detector."""
    preset, detector = preset_for_checkpoint(name), detector_for_file(name)
    return download_hint(directory, preset.name if preset else None, detector.name if detector else None)


def _missing_message(source: WeightsFile, directory: Path) -> str:
    hint = _file_hint(directory, source.name)
    return (
        f"missing {directory / source.name}. Download it with {hint}, "
        f"or by hand: open {source.url} in a browser and save the file as {directory / source.name}."
    )


def _report(files: Sequence[VerifiedFile], recorded_now: Sequence[VerifiedFile], record_command: str) -> None:
    fresh = {f.name for f in recorded_now}
    for f in files:
        state = "recorded now" if f.name in fresh else f.state
        print(f"ok  {f.path}  sha256 {f.sha256} ({state})")
    synthetic = [f for f in files if f.state == "synthetic"]
    if synthetic:
        print(
            f"{len(synthetic)} file(s) are synthetic random weights: they run, but find nothing meaningful."
        )
    unknown = [f for f in files if f.state == "unrecorded" and f.name not in fresh]
    if unknown:
        print(
            f"{len(unknown)} file(s) passed the size and format checks but no sha256 is recorded for them. "
            "Only if you downloaded them yourself from the official source (the URLs in the README), "
            f"record them with:\n  {record_command}"
        )


def _names(
    given: list[str] | None, flag: str, variable: str, default: str, table: Mapping[str, object]
) -> list[str]:
    """The names of ``flag``, else of the environment's ``variable``, else the default; an unknown one is
    an :class:`UnknownNameError` naming where it came from."""
    source, names = (flag, given) if given else (variable, [os.environ.get(variable) or default])
    try:
        return expand(names, table, flag.removeprefix("--"))
    except UnknownNameError as exc:
        raise UnknownNameError(f"{source}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandLineParser(
        prog="python -m alphapose.weights", description="Download and verify the official AlphaPose weights."
    )
    parser.add_argument(
        "--preset",
        action="append",
        metavar="NAME",
        help=f"pose preset whose checkpoint is needed (repeatable), or '{ALL}'; default: "
        f"$ALPHAPOSE_PRESET or {DEFAULT_PRESET}. Presets: {', '.join(PRESETS)}",
    )
    parser.add_argument(
        "--detector",
        action="append",
        metavar="NAME",
        help=f"detector whose weights are needed (repeatable), or '{ALL}'; default: $ALPHAPOSE_DETECTOR or "
        f"{DEFAULT_DETECTOR}. Detectors: {', '.join(DETECTORS)}",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="weights directory (default: $ALPHAPOSE_WEIGHTS_DIR or ./weights)",
    )
    parser.add_argument(
        "--verify", action="store_true", help="verify the files, download nothing (a missing one is an error)"
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="record the sha256 of verified files not yet known (only for files from the official source)",
    )
    parser.add_argument(
        "--copy-from",
        type=Path,
        metavar="DIR",
        help="take missing files from DIR when it has them (verified like downloads) instead of downloading",
    )
    parser.add_argument(
        "--allow-synthetic",
        action="store_true",
        help="let --copy-from take synthetic random weights (tools.synthetic_weights) and keep those in "
        "--dir, which a download replaces otherwise: for test images only",
    )
    parser.add_argument(
        "--checksums",
        type=Path,
        default=CHECKSUM_FILE,
        help=f"sha256sum-format file (default: {CHECKSUM_FILE})",
    )
    args = parser.parse_args(argv)
    source = "--dir" if args.dir is not None else "ALPHAPOSE_WEIGHTS_DIR"
    args.dir = args.dir or Path(os.environ.get("ALPHAPOSE_WEIGHTS_DIR") or DEFAULT_WEIGHTS_DIR)
    blocker = next((p for p in (args.dir, *args.dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        print(
            f"error: {source} {args.dir}: {blocker} is a file; give the directory the weights go in",
            file=sys.stderr,
        )
        return 1
    try:
        presets = _names(args.preset, "--preset", "ALPHAPOSE_PRESET", DEFAULT_PRESET, PRESETS)
        detectors = _names(args.detector, "--detector", "ALPHAPOSE_DETECTOR", DEFAULT_DETECTOR, DETECTORS)
    except UnknownNameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        files = ensure_weights(
            args.dir,
            required_files(presets, detectors),
            args.checksums,
            download=not args.verify,
            copy_from=args.copy_from,
            allow_synthetic=args.allow_synthetic,
        )
        recorded_now = record_checksums(files, args.checksums) if args.record else []
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a directory it may not write, a file it may not read
        copied = args.copy_from is not None and Path(exc.filename or "").is_relative_to(args.copy_from)
        flag = f"--copy-from {args.copy_from}" if copied else f"{source} {args.dir}"
        print(f"error: {flag}: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    command = ["python -m alphapose.weights --verify --record", *(f"--preset {p}" for p in presets)]
    command += [f"--detector {d}" for d in detectors]
    command.append(f"--dir {args.dir}")
    if args.checksums != CHECKSUM_FILE:
        command.append(f"--checksums {args.checksums}")
    _report(files, recorded_now, " ".join(command))
    return 0
