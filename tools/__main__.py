"""``python -m tools``: see :mod:`tools.cli`. Ctrl-C at any moment, imports included, ends it quietly."""

import argparse
import os
import signal
import sys
from collections.abc import Callable


def _interrupted_while_importing(signum: int, frame: object) -> None:
    """Leave at once: some libraries swallow KeyboardInterrupt while they import."""
    sys.stderr.write("interrupted\n")
    os._exit(130)


def _parsed() -> tuple[Callable[[argparse.Namespace], int], argparse.Namespace]:
    """:func:`tools.cli.run` and the command line parsed, its command's module imported."""
    from tools.cli import build_parser, run

    return run, build_parser(sys.argv[1:]).parse_args()


# OpenCV and the FFmpeg it bundles log to stderr on their own (a file that is no video: "moov atom not
# found", a WARN line), before the command's one line that says what went wrong and what to do. Read when
# OpenCV loads; a value the user set is kept, to see that log again.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's AV_LOG_QUIET
ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # an ignored Ctrl-C stays ignored
if not ignored:
    signal.signal(signal.SIGINT, _interrupted_while_importing)
run, args = _parsed()
if not ignored:
    signal.signal(signal.SIGINT, signal.default_int_handler)

try:
    status = run(args)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    status = 130
sys.exit(status)
