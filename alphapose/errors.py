"""The pose library's exceptions, each message meant for the person who has to act on it, and how a
command tells what stops it, in one line: the library's own (``python -m alphapose.weights``,
``python -m alphapose.engines``) and the tools and benchmarks built on the library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Mapping
from typing import NoReturn, TypeVar

Row = TypeVar("Row")


class AlphaPoseError(Exception):
    """Base of every error the library raises on purpose."""


class WeightsError(AlphaPoseError, RuntimeError):
    """A weights file is missing, truncated, corrupt or does not fit the model it is loaded into."""


class UnknownNameError(AlphaPoseError, ValueError):
    """A preset or detector name that is not in its table; the message lists the valid names."""


def lookup(table: Mapping[str, Row], name: str, what: str) -> Row:
    """The row called ``name`` of a table (presets, detectors); :class:`UnknownNameError` lists the names."""
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(f"unknown {what} {name!r}; choose one of: {', '.join(table)}") from None


def install_hint(extra: str) -> str:
    """How to install one of the package's extras. From the project's checkout: the name ``alphapose`` on
    PyPI is another, older project, which ``pip install 'alphapose[EXTRA]'`` would fetch."""
    return (
        f"`pip install -r requirements-{extra}.txt` in the project's checkout (`pip install '.[{extra}]'` "
        "there installs the package with it)"
    )


def missing_package(name: str | None, module: str, remedy: str | None = None) -> str:
    """The one line for ``python -m <module>`` run by a Python that lacks package ``name``: a Python outside
    the project's environment, which the import traceback does not say, unless ``remedy`` says otherwise."""
    remedy = remedy or (
        f"run it with the project's Python (.venv/bin/python -m {module} ..., after make setup), or pip "
        "install -r requirements.txt in this one"
    )
    return f"{sys.executable} has no {name} package: {remedy}"


def run_command(
    main: Callable[[], int | None],
    module: str,
    remedy: str | None = None,
    *,
    checkout: Collection[str] = ("alphapose",),
) -> NoReturn:
    """Exit with the status of ``main``, the whole of ``python -m <module>``, its imports included, with
    one line rather than a traceback for what the user can mend: Ctrl-C at any moment (PyTorch's import
    takes seconds), a Python without the project's packages (:func:`missing_package`, told ``remedy``;
    a package of ``checkout`` missing is the checkout's fault, whose traceback is the help), an error
    the library raises on purpose that ``main`` left uncaught (status 2 for a value refused, 1 for a
    file), and a reader of stdout that went early (``| head``: nothing more is said, status 1)."""
    try:
        status = main()
        sys.stdout.flush()  # here, where a reader gone is caught, rather than at exit
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in checkout:
            raise
        print(f"error: {missing_package(exc.name, module, remedy)}", file=sys.stderr)
        status = 1
    except AlphaPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 2 if isinstance(exc, ValueError) else 1
    except BrokenPipeError:
        # stdout goes to devnull so that the flush at exit does not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)


class SyntheticWeightsWarning(UserWarning):
    """A pipeline was loaded from synthetic random weights (``tools.synthetic_weights``): it runs, but
    what it finds means nothing. Warned rather than refused: the tests and offline trials run on them."""


class OptionError(AlphaPoseError, ValueError):
    """A pipeline option holds a value the pipeline cannot run with.

    ``option`` is the field of :class:`alphapose.options.PipelineOptions`, so that a caller can name the
    setting the way its user spelled it (an environment variable, a flag).
    """

    def __init__(self, option: str, value: object, problem: str) -> None:
        super().__init__(f"{option}={value!r}: {problem}")
        self.option = option
        self.value = value
        self.problem = problem

    def as_flag(self) -> str:
        """The refusal for a command line whose flags are the options' names (``--detector-size 33:
        ...``): the library's own commands and the benchmarks."""
        return f"--{self.option.replace('_', '-')} {self.value!r}: {self.problem}"


class PrecisionError(OptionError):
    """A precision that is not one of auto, fp32, bf16, fp16, or one this CPU has no units for."""

    def __init__(self, value: object, problem: str) -> None:
        super().__init__("precision", value, problem)


class VideoError(AlphaPoseError, ValueError):
    """A video file or a directory of frames that cannot be read; the message names the file."""


class ImageError(AlphaPoseError, ValueError):
    """An image file that cannot be used: not an image, a refused format, broken pixel data, or over the
    pixel limit (``too_large``, which a server answers with 413 rather than 400)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


class CommandLineParser(argparse.ArgumentParser):
    """argparse's parser, except that a mistake on the command line is one line on stderr, status 2, as
    every other error of the project's commands is: argparse's own message, without the usage text
    (two dozen lines for the model commands) that buries it, and where to find the flags instead.
    Subcommands' parsers are of the same class (argparse makes them of their parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see {self.prog} --help\n")
