"""``python -m tools``: see :mod:`tools.cli`. Ctrl-C at any moment, imports included, a Python without the
project's packages and a reader of stdout that goes early (``| head``) end it quietly
(:func:`alphapose.errors.run_command`)."""

import argparse
import os
import signal
import sys
from collections.abc import Callable

from alphapose.errors import run_command


def _interrupted_while_importing(signum: int, frame: object) -> None:
    """Leave at once: some libraries swallow KeyboardInterrupt while they import."""
    sys.stderr.write("interrupted\n")
    os._exit(130)


# a module of these missing is a fault of the checkout, not of the Python that runs it
_PROJECT = {"alphapose", "tools", "bench", "main", "model_handler"}


def _parsed() -> tuple[Callable[[argparse.Namespace], int], argparse.Namespace]:
    """:func:`tools.cli.run` and the command line parsed, its command's module imported."""
    from tools.cli import parse, run

    return run, parse(sys.argv[1:])


def _run() -> int:
    """Parse and run the command; Ctrl-C while the command's modules import leaves at once."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # an ignored Ctrl-C stays ignored
    if not ignored:
        signal.signal(signal.SIGINT, _interrupted_while_importing)
    run, args = _parsed()
    if not ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return run(args)


# OpenCV and the FFmpeg it bundles log to stderr on their own (a file that is no video: "moov atom not
# found", a WARN line), before the command's one line that says what went wrong and what to do. Read when
# OpenCV loads; a value the user set is kept, to see that log again.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's AV_LOG_QUIET

run_command(_run, "tools", checkout=_PROJECT)
