"""``python -m tools.readme``: write the settings table (alphapose/cvat/settings.py) into README.md,
between its markers; ``--check`` (``make lint``) and tests/alphapose/cvat/test_settings.py fail while the
two disagree."""

from __future__ import annotations

import argparse
from pathlib import Path

from alphapose.cvat.settings import readme_table
from tools.markers import Block

README = Path(__file__).resolve().parent.parent / "README.md"
SETTINGS_TABLE = Block("settings table", "python -m tools.readme")


def settings_block() -> str:
    """What the README holds between the settings table's markers."""
    return f"\n{readme_table()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.readme", description="Write the settings table into README.md."
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when README.md's table is not the code's"
    )
    args = parser.parse_args(argv)
    print(SETTINGS_TABLE.sync(README, settings_block(), check=args.check))


if __name__ == "__main__":
    main()
