"""The official weights files: where their authors publish them and the sha256 recorded for each.

A :class:`WeightsFile` is data that the preset and detector tables point at; downloading, the function
images' build steps, the README and the checks all read it from there. This module needs no PyTorch, so
the tables (and the command-line parsers made from them) do not either; a checkpoint is read by
:func:`alphapose.weights.strict.load_checkpoint`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from alphapose.errors import WeightsError

CHECKSUM_FILE = Path(__file__).resolve().parents[1] / "data" / "weights.sha256"

_CHECKSUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_DRIVE_HOST = "drive.google.com"


@dataclass(frozen=True)
class WeightsFile:
    """One official file: ``name`` is the file name it keeps in a weights directory."""

    name: str
    url: str

    @property
    def on_google_drive(self) -> bool:
        """Google Drive needs its own client (a confirmation page stands before large files)."""
        return urlsplit(self.url).hostname == _DRIVE_HOST

    @property
    def drive_id(self) -> str | None:
        return parse_qs(urlsplit(self.url).query).get("id", [None])[0] if self.on_google_drive else None


def google_drive(file_id: str) -> str:
    """The download URL of a Google Drive file, the form AlphaPose's model zoo links to."""
    return f"https://{_DRIVE_HOST}/uc?id={file_id}"


def read_checksums(path: Path = CHECKSUM_FILE) -> dict[str, str]:
    """``{file name: sha256}`` from a sha256sum-format file; ``#`` lines are comments, as for sha256sum."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"cannot read {path} as a sha256sum file: {exc}") from None
    checksums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _CHECKSUM_LINE.match(line)
        if match is None:
            raise WeightsError(
                f"{path}:{number}: not a sha256sum line ('<64 hex digits>  <file name>'): {line!r}"
            )
        checksums[match.group(2)] = match.group(1).lower()
    return checksums


def sha256_of(path: Path) -> str:
    """The file's sha256, read in blocks (the checksum files record it; export caches are keyed on it)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
