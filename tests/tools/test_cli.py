"""``python -m tools``: the commands listed without importing them, and only the one that runs imported."""

from __future__ import annotations

import subprocess
import sys

from repo_paths import REPO

from tools.cli import COMMANDS, build_parser


def test_call_and_serve_start_without_pytorch() -> None:
    """Neither holds a model (``serve``'s workers do): PyTorch would cost them seconds and hundreds of
    megabytes."""
    script = (
        "import sys\n"
        "from tools.cli import build_parser\n"
        "for argv in (['call', 'http://localhost:8080', 'a.jpg'], ['serve', '--port', '0']):\n"
        "    build_parser(argv).parse_args(argv)\n"
        "print(sorted(m for m in ('torch', 'tools.predict', 'tools.evaluate') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_every_command_is_listed_and_the_one_named_takes_its_arguments() -> None:
    parser = build_parser([])
    (commands,) = parser._subparsers._group_actions
    assert list(commands.choices) == list(COMMANDS)
    args = build_parser(["call"]).parse_args(["call", "http://localhost:8080", "a.jpg", "--threshold", "0.5"])
    assert (args.url, args.threshold) == ("http://localhost:8080", 0.5)
    assert args.command.__module__ == "tools.call"
