"""CVAT SDK entry point (``cvat-cli ... --function-file cvat_function.py``), the twin of main.py for Nuclio.

cvat-cli loads this file by path without putting its directory on ``sys.path``, so the checkout is put
there first: the ``alphapose`` package beside this file is the one that runs, installed or not. With
the package installed, ``--function-module alphapose.cvat.sdk_function`` is the same function.
"""

import sys
from pathlib import Path

_CHECKOUT = str(Path(__file__).resolve().parent)
if _CHECKOUT not in sys.path:
    sys.path.insert(0, _CHECKOUT)

from alphapose.cvat.sdk_function import AlphaPoseFunction, create  # noqa: E402

__all__ = ["AlphaPoseFunction", "create"]
