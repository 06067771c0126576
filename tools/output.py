"""What the commands write: JSON (whole, or a results list entry by entry) and drawn images."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from tools.errors import CommandError

# What --render writes for a video: the containers tools.render.VideoWriter encodes MPEG-4 part 2 in.
RENDER_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def write_json(data: Any, out: Path | None) -> None:
    """``data`` as indented JSON into ``out`` (the ``--out`` flag), or to stdout."""
    text = json.dumps(data, indent=2)
    if out is None:
        print(text)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    except OSError as exc:
        raise unwritable("--out", out, exc) from None


def check_writable(flag: str, path: Path, *, directory: bool = False) -> None:
    """Refuse, in one line naming ``flag``, an output the command could not write once its work is done:
    a directory given for a file (or a file for a ``directory``), a path under a regular file or in a
    directory it may not write. Nothing is made: a run that fails before writing leaves no trace."""
    if path.exists() and path.is_dir() != directory:
        raise CommandError(f"cannot write {flag} {path}: it is a {'file' if directory else 'directory'}", 1)
    existing = path if directory else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"cannot write {flag} {path}: {existing} is a file, not a directory", 1)
    if not os.access(existing, os.W_OK):
        raise CommandError(f"cannot write {flag} {path}: {existing} may not be written", 1)


def unwritable(flag: str, path: Path, exc: OSError) -> CommandError:
    """The one line for an output file the command cannot write, naming the flag that chose it."""
    return CommandError(f"cannot write {flag} {path}: {exc.strerror or exc}", 1)


def render_image(image: np.ndarray, skeletons: list[dict[str, Any]], path: Path) -> None:
    """The skeletons drawn on the image, saved at ``path`` (the ``--render`` flag's)."""
    from tools.render import draw_skeletons, save_rgb

    try:
        save_rgb(path, draw_skeletons(image, skeletons))
    except OSError as exc:
        raise unwritable("--render", path, exc) from None
    print(f"rendered {path}", file=sys.stderr)


class JsonList:
    """AlphaPose's results list written one entry at a time: to stdout, or to a file that appears only
    when complete (a failure part-way leaves no truncated results behind)."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.partial = None if out is None else out.with_name(out.name + ".partial")
        self.stream: IO[str] = sys.stdout
        self.count = 0

    def __enter__(self) -> JsonList:
        if self.out is not None and self.partial is not None:
            try:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self.stream = self.partial.open("w")
            except OSError as exc:
                raise unwritable("--out", self.out, exc) from None
        self.stream.write("[")
        return self

    def write(self, entry: dict[str, Any]) -> None:
        self.stream.write(("," if self.count else "") + "\n  " + json.dumps(entry))
        self.count += 1

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is None:
            self.stream.write("\n]\n" if self.count else "]\n")
        if self.out is None or self.partial is None:
            return
        self.stream.close()
        if kind is None:
            os.replace(self.partial, self.out)
        else:
            self.partial.unlink()
