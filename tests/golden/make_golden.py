"""Record the golden fixtures from the official AlphaPose code.

    python tests/golden/make_golden.py --official /work/official --out tests/golden/data \\
        --deps DIR [--only NAME ...]

Runs ``generate(official, out) -> list[Path]`` of every ``tests/golden/gen_<name>.py`` (or only the
named ones) and prints the files each wrote. ``--deps`` is a ``pip install --target`` directory with the
packages the official code needs beyond ours (easydict); it goes onto ``PYTHONPATH`` of the child
processes that run the official code (see tests/golden/official.py). tests/golden/README.md says what
each file holds.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


def generator_names() -> list[str]:
    """Names of the gen_<name>.py modules next to this script, sorted."""
    return sorted(path.stem.removeprefix("gen_") for path in HERE.glob("gen_*.py"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of MVIG-SJTU/AlphaPose")
    parser.add_argument("--out", type=Path, default=HERE / "data")
    parser.add_argument("--deps", type=Path, help="pip --target directory holding easydict")
    parser.add_argument("--only", action="append", choices=generator_names(), help="repeatable")
    args = parser.parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # run as a script: make tests.golden importable
    if args.deps is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(args.deps.resolve()), os.environ.get("PYTHONPATH", "")])
        )
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO_ROOT)]))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or generator_names():
        started = time.monotonic()
        module = importlib.import_module(f"tests.golden.gen_{name}")
        written = module.generate(args.official.resolve(), args.out.resolve())
        print(f"{name}: {len(written)} files in {time.monotonic() - started:.0f} s")
        for path in written:
            print(f"  {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")


if __name__ == "__main__":
    main()
