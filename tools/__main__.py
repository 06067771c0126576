"""``python -m tools``: see :mod:`tools.cli`. Ctrl-C at any moment, imports included, ends it quietly."""

import sys

try:
    from tools.cli import main

    status = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    status = 130
sys.exit(status)
