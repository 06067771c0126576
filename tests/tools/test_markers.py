"""Generated blocks of markdown pages (tools/markers.py): rewritten between their markers only, checked
without writing, and a page without the markers refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.markers import Block

BLOCK = Block("table", "python -m make.table --page {page}")


def page(tmp_path: Path, inside: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(
        f"# Title\n\n<!-- table: begin -->{inside}<!-- table: end -->\n\nafter <!-- table: end -->\n"
    )
    return path


def test_the_block_is_replaced_and_the_rest_of_the_page_kept(tmp_path: Path) -> None:
    path = page(tmp_path, "\nold\n")
    assert BLOCK.update(path, "\nnew\n")
    assert path.read_text() == (
        "# Title\n\n<!-- table: begin -->\nnew\n<!-- table: end -->\n\nafter <!-- table: end -->\n"
    )
    assert BLOCK.current(path) == "\nnew\n"
    assert not BLOCK.update(path, "\nnew\n")


def test_check_compares_without_writing_and_a_stale_page_names_the_command(tmp_path: Path) -> None:
    path = page(tmp_path, "\nold\n")
    before = path.read_text()
    assert BLOCK.sync(path, "\nold\n", check=True) == f"{path}: already up to date"
    with pytest.raises(SystemExit, match=f"^{path} is stale: run python -m make.table --page {path}$"):
        BLOCK.sync(path, "\nnew\n", check=True)
    assert path.read_text() == before


@pytest.mark.parametrize("text", ["no markers\n", "<!-- table: end --> then <!-- table: begin -->\n"])
def test_a_page_without_the_block_is_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "page.md"
    path.write_text(text)
    with pytest.raises(SystemExit, match=r"has no generated block \(<!-- table: begin --> \.\.\. "):
        BLOCK.update(path, "x")
