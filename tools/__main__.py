"""``python -m tools``: see :mod:`tools.cli`. Ctrl-C at any moment, imports included, ends it quietly."""

import os
import signal
import sys


def _interrupted_while_importing(signum: int, frame: object) -> None:
    """Leave at once: some libraries swallow KeyboardInterrupt while they import."""
    sys.stderr.write("interrupted\n")
    os._exit(130)


if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # an ignored Ctrl-C stays ignored
    signal.signal(signal.SIGINT, _interrupted_while_importing)
    from tools.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)
else:
    from tools.cli import main

try:
    status = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    status = 130
sys.exit(status)
