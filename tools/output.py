"""What the commands write: JSON (whole, or a results list entry by entry) and drawn images."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np


def write_json(data: Any, out: Path | None) -> None:
    """``data`` as indented JSON into ``out``, or to stdout."""
    text = json.dumps(data, indent=2)
    if out is None:
        print(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


def render_image(image: np.ndarray, skeletons: list[dict[str, Any]], path: Path) -> None:
    """The skeletons drawn on the image, saved at ``path``."""
    from tools.render import draw_skeletons, save_rgb

    save_rgb(path, draw_skeletons(image, skeletons))
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
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.stream = self.partial.open("w")
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
