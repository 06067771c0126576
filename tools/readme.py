"""``python -m tools.readme``: write the settings table (alphapose/cvat/settings.py) and the tracker's
flags (tools/tracker_flags.py) into README.md, between their markers; ``--check`` (``make lint``) and the
tests of those tables fail while the README and the code disagree."""

from __future__ import annotations

from pathlib import Path

from alphapose.cvat.settings import readme_table
from alphapose.errors import CommandLineParser
from tools.markers import Block
from tools.tracker_flags import readme_table as tracker_table

README = Path(__file__).resolve().parent.parent / "README.md"
SETTINGS_TABLE = Block("settings table", "python -m tools.readme")
TRACKER_TABLE = Block("tracker flags", "python -m tools.readme")


def settings_block() -> str:
    """What the README holds between the settings table's markers."""
    return f"\n{readme_table()}"


def tracker_block() -> str:
    """What the README holds between the tracker flags' markers."""
    return f"\n{tracker_table()}"


def main(argv: list[str] | None = None) -> None:
    parser = CommandLineParser(
        prog="python -m tools.readme", description="Write the settings and tracker tables into README.md."
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a README.md table is not the code's"
    )
    args = parser.parse_args(argv)
    for block, content in ((SETTINGS_TABLE, settings_block()), (TRACKER_TABLE, tracker_block())):
        print(f"{block.label}: {block.sync(README, content, check=args.check)}")


if __name__ == "__main__":
    main()
