"""``python -m tools``: the commands listed without importing them, and only the one that runs imported."""

from __future__ import annotations

import subprocess
import sys

import pytest
from repo_paths import REPO

from tools.cli import COMMANDS, build_parser, main


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


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "people.jpg"],
        ["predict", "clip.mp4"],
        ["annotate-task", "42", "--server-host", "http://cvat.example.com"],
        ["evaluate", "--annotations", "person_keypoints.json", "--images", "val"],
    ],
)
@pytest.mark.parametrize("threshold", ["1.5", "-0.1", "nan"])
def test_a_person_threshold_outside_0_1_is_refused_before_any_work(
    command: list[str], threshold: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the function's request refuses it: above 1 it would leave every person out without a word."""
    assert main([*command, "--threshold", threshold]) == 2
    assert capsys.readouterr().err == (
        f"error: invalid --threshold {float(threshold)}: must be a person (box) score in [0, 1]\n"
    )


def test_the_synthetic_weights_writer_names_itself_as_it_is_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Its usage and errors say ``python -m tools.synthetic_weights``, the command the README and make give,
    not the file name."""
    from tools import synthetic_weights

    with pytest.raises(SystemExit):
        synthetic_weights.main(["--preset", "no_such_preset", "directory"])
    assert capsys.readouterr().err.startswith("usage: python -m tools.synthetic_weights ")
