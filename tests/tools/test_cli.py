"""``python -m tools``: the commands listed without importing them, and only the one that runs imported."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest
import torch
from repo_paths import REPO, TEST_DATA

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


# Each command line, run by tools.cli.main in one process in this order, and the start of what it prints
# on stderr (--help prints on stdout).
PARSED_WITHOUT_THE_MODEL = [
    (["predict", "--help"], ""),
    (["annotate-task", "--help"], ""),
    (["evaluate", "--help"], ""),
    (["predict", str(TEST_DATA / "astronaut.jpg"), "--preset", "nope"], "error: invalid --preset 'nope': "),
    (["predict", str(TEST_DATA / "astronaut.jpg"), "--device", "gpu9"], "error: invalid --device 'gpu9': "),
    (["predict", str(TEST_DATA / "astronaut.jpg"), "--threshold", "2"], "error: invalid --threshold 2.0: "),
    (
        ["predict", str(TEST_DATA / "astronaut.jpg"), "--detector-size", "99999968"],
        "error: invalid --detector-size '99999968': must be a multiple of 32 from 32 to 4096",
    ),
    (["annotate-task", "1", "--precision", "fp64"], "error: invalid --precision 'fp64': "),
    (
        ["evaluate", "--annotations", "a.json", "--images", "x", "--presett", "nope"],
        "error: unrecognized arguments: --presett nope; see python -m tools evaluate --help",
    ),
    (["predict", "a.jpg", "--threshold", "x"], "error: argument --threshold: invalid float value: 'x'; see "),
]


def test_the_model_commands_parse_and_refuse_their_flags_without_pytorch_or_opencv() -> None:
    """predict, annotate-task and evaluate import the model only to run it: --help, a mistyped flag and a
    bad setting are answered without torch, torchvision or cv2, which took seconds to import first, nor
    scipy, which only the tracker needs (the ``video`` extra)."""
    script = (
        "import contextlib, io, json, sys\n"
        "from tools.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            status = main(argv)\n"
        "        except SystemExit as exc:\n"
        "            status = exc.code\n"
        "    loaded = sorted(m for m in ('torch', 'torchvision', 'cv2', 'scipy') if m in sys.modules)\n"
        "    print(json.dumps([status, err.getvalue(), loaded]))\n"
    )
    argvs = [argv for argv, _ in PARSED_WITHOUT_THE_MODEL]
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argvs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(outcomes) == len(PARSED_WITHOUT_THE_MODEL), result.stderr
    for (argv, start), (status, err, loaded) in zip(PARSED_WITHOUT_THE_MODEL, outcomes, strict=True):
        help_asked = argv[-1] == "--help"
        assert (status, loaded) == (0 if help_asked else 2, []), (argv, err)
        assert err.startswith(start) and err.count("\n") == (0 if help_asked else 1), (argv, err)


def test_no_command_at_all_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """A bare ``python -m tools`` asks what there is: the help, not "the following arguments are
    required: COMMAND"."""
    with pytest.raises(SystemExit) as stopped:
        main([])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.startswith("usage: python -m tools ") and all(f"    {name}" in err for name in COMMANDS), err


def test_every_command_of_the_project_parses_with_the_one_line_parser() -> None:
    """A command whose parser is argparse's own prints two dozen lines of usage above a mistyped flag's
    error; the one exception is the cold-start benchmark's worker, which times its own imports."""
    plain = sorted(
        str(path.relative_to(REPO))
        for package in ("alphapose", "tools", "bench")
        for path in (REPO / package).rglob("*.py")
        if "argparse.ArgumentParser(" in path.read_text()
    )
    assert plain == ["bench/coldstart.py"]


def test_every_command_is_listed_and_the_one_named_takes_its_arguments() -> None:
    parser = build_parser([])
    (commands,) = parser._subparsers._group_actions
    assert list(commands.choices) == list(COMMANDS)
    args = build_parser(["call"]).parse_args(["call", "http://localhost:8080", "a.jpg", "--threshold", "0.5"])
    assert (args.url, args.threshold) == ("http://localhost:8080", 0.5)
    assert args.command.__module__ == "tools.call"


def test_the_synthetic_weights_writer_names_itself_as_it_is_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Its usage and errors say ``python -m tools.synthetic_weights``, the command the README and make give,
    not the file name."""
    from tools import synthetic_weights

    with pytest.raises(SystemExit):
        synthetic_weights.main(["--preset", "no_such_preset", "directory"])
    err = capsys.readouterr().err
    assert err.startswith("error: argument --preset: ") and err.endswith(
        "; see python -m tools.synthetic_weights --help\n"
    ), err


def test_the_synthetic_weights_writer_names_a_directory_it_cannot_write_in_one_line(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file given as the directory (or above it) was mkdir's traceback, and Ctrl-C while the files are
    written KeyboardInterrupt's."""
    from tools import synthetic_weights

    blocker = tmp_path / "weights"
    blocker.write_text("x")
    for directory in (blocker, blocker / "sub"):
        assert synthetic_weights.main([str(directory)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: cannot write weights in {directory}: "), err

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)  # the first file written: run as python -m runs it
    monkeypatch.setattr(sys, "argv", ["python -m tools.synthetic_weights", str(tmp_path / "new")])
    monkeypatch.delitem(sys.modules, "tools.synthetic_weights")  # runpy runs a fresh copy as __main__
    with pytest.raises((SystemExit, KeyboardInterrupt)) as stopped:  # one escaping would stop pytest
        runpy.run_module("tools.synthetic_weights", run_name="__main__")
    assert stopped.type is SystemExit and stopped.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize(
    ("flags", "start"),
    [
        (["--workers", "0"], "error: invalid --workers 0: "),
        (["--workers", "-1"], "error: invalid --workers -1: "),
        (["--port", "-1"], "error: invalid --port -1: "),
        (["--port", "70000"], "error: invalid --port 70000: "),
        (["--max-body-size", "-1"], "error: invalid --max-body-size -1: "),
        (["--worker-availability-timeout", "-5"], "error: invalid --worker-availability-timeout -5.0: "),
        (["--worker-availability-timeout", "nan"], "error: invalid --worker-availability-timeout nan: "),
        (["--event-timeout", "0"], "error: invalid --event-timeout 0.0: "),
        (["--event-timeout", "inf"], "error: invalid --event-timeout inf: "),
        (["--host", "no-such-host.invalid"], "error: cannot listen on --host no-such-host.invalid: "),
        (["--host", "192.0.2.1"], "error: cannot listen on --host 192.0.2.1: "),  # not this machine's
        (["--handler", "main"], "error: invalid --handler 'main': expected module:function"),
        (
            ["--handler", "no_such_module:handler"],
            "error: invalid --handler 'no_such_module:handler': no module",
        ),
    ],
)
def test_serve_refuses_a_flag_it_cannot_run_with_in_one_line_before_any_worker(
    flags: list[str], start: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was a traceback, or a server answering every request with 413, 408 or 503."""
    assert main(["serve", "--port", "0", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(start), err


def test_a_python_without_the_requirements_is_told_which_to_use() -> None:
    """``python3 -m tools call ...`` outside the project's environment: the first package the command
    imports is missing, and one line says which Python runs the tools, instead of an import traceback."""
    script = (
        "import runpy, sys\n"
        "sys.modules['cv2'] = None\n"  # as in a Python without the requirements
        "sys.argv = ['tools', 'call', 'http://127.0.0.1:9', sys.argv[1]]\n"
        "runpy.run_module('tools', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(TEST_DATA / "astronaut.jpg")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {sys.executable} has no cv2 package: run it with "), (
        result.stderr
    )
    assert result.stderr.count("\n") == 1


def test_a_file_that_is_no_video_is_one_line_without_opencvs_or_ffmpegs_log(tmp_path) -> None:
    """FFmpeg and OpenCV log to stderr on their own ("moov atom not found", "[ WARN:0@0.3] ... can't be
    used to capture by name"): those lines came before the command's one line."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 20)
    result = subprocess.run(
        [sys.executable, "-m", "tools", "predict", str(video), "--weights-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot read {video} as a video: ")
    assert result.stderr.count("\n") == 1, result.stderr
