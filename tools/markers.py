"""Generated blocks of markdown pages: the text between ``<!-- label: begin -->`` and ``<!-- label: end -->``.

The README's settings table (``python -m tools.readme``) and docs/performance.md's figures
(``python -m bench.report --docs``) are written from the code into such a block; the rewrite and the
``--check`` that ``make lint`` runs (is the block what the code makes?) are written here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Block:
    """A page's block between the markers of ``label``; ``command`` is what rewrites it, named when it is
    stale (``{page}`` in it becomes the page)."""

    label: str
    command: str

    @property
    def begin(self) -> str:
        return f"<!-- {self.label}: begin -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.label}: end -->"

    def _span(self, text: str, page: Path) -> tuple[int, int]:
        start = text.find(self.begin)
        stop = text.find(self.end, start + len(self.begin)) if start >= 0 else -1
        if stop < 0:
            raise SystemExit(f"{page} has no generated block ({self.begin} ... {self.end})")
        return start + len(self.begin), stop

    def current(self, page: Path) -> str:
        """What lies between the markers in ``page`` now."""
        text = page.read_text()
        start, stop = self._span(text, page)
        return text[start:stop]

    def update(self, page: Path, content: str, *, check: bool = False) -> bool:
        """Put ``content`` between the markers of ``page`` (with ``check``, only compare); whether the page's
        text differed from it."""
        text = page.read_text()
        start, stop = self._span(text, page)
        updated = text[:start] + content + text[stop:]
        if not check and updated != text:
            page.write_text(updated)
        return updated != text

    def sync(self, page: Path, content: str, *, check: bool = False) -> str:
        """:meth:`update`, and the line to print; with ``check``, a stale page exits with one line naming
        :attr:`command`."""
        stale = self.update(page, content, check=check)
        if check and stale:
            raise SystemExit(f"{page} is stale: run {self.command.format(page=page)}")
        return f"{page}: {'updated' if stale else 'already up to date'}"
