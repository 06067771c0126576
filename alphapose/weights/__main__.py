"""``python -m alphapose.weights``: download and verify the official weights
(:mod:`alphapose.weights.download`). Ctrl-C at any moment, PyTorch's import included, ends it in one line."""

import sys

try:
    from alphapose.weights.download import main

    status = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    status = 130
sys.exit(status)
