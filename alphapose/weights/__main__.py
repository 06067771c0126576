"""``python -m alphapose.weights``: download and verify the official weights
(:mod:`alphapose.weights.download`), which imports PyTorch: inside :func:`run_command`, whose Ctrl-C and
missing packages are one line."""

from alphapose.errors import run_command


def _main() -> int:
    from alphapose.weights.download import main

    return main()


run_command(_main, "alphapose.weights")
