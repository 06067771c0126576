"""How the library's commands, and the tools and benchmarks built on the same pieces, tell what stops
them: one line on stderr and an exit status, never a traceback for what the user can mend."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from repo_paths import REPO

from alphapose.cvat.errors import ConfigError
from alphapose.errors import CommandLineParser, OptionError, WeightsError, run_command


def test_a_mistyped_command_line_is_one_line_naming_where_the_flags_are_listed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = CommandLineParser(prog="python -m x")
    parser.add_argument("--size", type=int, required=True)
    commands = parser.add_subparsers().add_parser("sub")  # a subcommand's parser is of the same class
    commands.add_argument("--n", type=int)
    for argv, line in [
        (["--size", "big"], "error: argument --size: invalid int value: 'big'; see python -m x --help\n"),
        (
            ["--size", "1", "sub", "--n", "x"],
            "error: argument --n: invalid int value: 'x'; see python -m x sub --help\n",
        ),
    ]:
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(argv)
        assert (stopped.value.code, capsys.readouterr().err) == (2, line)


def _raising(exc: BaseException) -> Callable[[], int]:
    def main() -> int:
        raise exc

    return main


@pytest.mark.parametrize(
    ("exc", "status", "line"),
    [
        (KeyboardInterrupt(), 130, "interrupted\n"),
        (
            OptionError("detector_size", 33, "must be a multiple of 32"),
            2,
            "error: detector_size=33: must be a multiple of 32\n",
        ),
        (ConfigError("invalid ALPHAPOSE_FLIP='maybe'"), 2, "error: invalid ALPHAPOSE_FLIP='maybe'\n"),
        (WeightsError("weights/x.pth is truncated"), 1, "error: weights/x.pth is truncated\n"),
        (
            ModuleNotFoundError("No module named 'boxmot'", name="boxmot"),
            1,
            f"error: {sys.executable} has no boxmot package: make bench-tracking installs it\n",
        ),
    ],
)
def test_what_the_user_can_mend_ends_the_command_in_one_line(
    exc: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_command(_raising(exc), "bench.tracking", "make bench-tracking installs it")
    assert (stopped.value.code, capsys.readouterr().err) == (status, line)


@pytest.mark.parametrize(
    "exc",
    [ModuleNotFoundError("No module named 'alphapose.gone'", name="alphapose.gone"), RuntimeError("a bug")],
)
def test_a_fault_of_the_checkout_or_a_bug_keeps_its_traceback(exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        run_command(_raising(exc), "alphapose.weights")


@pytest.mark.slow  # imports PyTorch
def test_the_latency_benchmark_refuses_a_bad_setting_before_any_work() -> None:
    """It wrote synthetic weights and started a cold-start worker first, whose traceback then ended it."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--detector-size", "99999968"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stderr) == (
        2,
        "error: --detector-size 99999968: must be a multiple of 32 from 32 to 4096; "
        "see python -m bench --help\n",
    )
