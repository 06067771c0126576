"""``python -m alphapose``: see :mod:`alphapose.cli`."""

import sys

from alphapose.cli import main

if __name__ == "__main__":
    sys.exit(main())
