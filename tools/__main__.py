"""``python -m tools``: see :mod:`tools.cli`. Ctrl-C at any moment, imports included, and a reader of stdout
that goes early (``| head``) end it quietly."""

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


ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # an ignored Ctrl-C stays ignored
if not ignored:
    signal.signal(signal.SIGINT, _interrupted_while_importing)
run, args = _parsed()
if not ignored:
    signal.signal(signal.SIGINT, signal.default_int_handler)

try:
    status = run(args)
    sys.stdout.flush()  # here, where a reader gone is caught, rather than at exit
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    status = 130
except BrokenPipeError:
    # The reader of stdout went first (``| head``): nothing is left to say. stdout goes to devnull so
    # that the flush at exit does not fail a second time.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    status = 1
sys.exit(status)
