"""``python -m tools.readme``: write the settings table (alphapose/cvat/settings.py) into README.md,
between its markers; tests/alphapose/cvat/test_settings.py fails while the two disagree."""

from __future__ import annotations

import sys
from pathlib import Path

from alphapose.cvat.settings import README_BEGIN, README_END, readme_table

README = Path(__file__).resolve().parent.parent / "README.md"


def update_readme(path: Path = README) -> bool:
    """Write the table between the markers of the README at ``path``; whether it changed."""
    text = path.read_text()
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    updated = f"{head}{README_BEGIN}\n{readme_table()}{README_END}{tail}"
    path.write_text(updated)
    return updated != text


if __name__ == "__main__":
    print(f"{README}: {'updated' if update_readme() else 'already up to date'}", file=sys.stderr)
