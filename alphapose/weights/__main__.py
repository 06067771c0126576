"""``python -m alphapose.weights``: download and verify the official weights
(:mod:`alphapose.weights.download`)."""

import sys

from alphapose.weights.download import main

sys.exit(main())
