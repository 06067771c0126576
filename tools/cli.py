"""``python -m tools``: run the function's model locally, call a deployed function, or serve it.

    python -m tools predict IMAGE... [--out results.json] [--render out.png|DIR] [--format cvat|coco]
    python -m tools predict VIDEO|FRAMES_DIR [--out results.json] [--render out.mp4] [tracker flags]
    python -m tools predict VIDEOS_DIR --out DIR [--render DIR] [tracker flags]
    python -m tools call URL IMAGE [--threshold T] [--render out.png] [--out answer.json]
    python -m tools serve [--host 127.0.0.1] [--port 8080] [--workers N]
    python -m tools annotate-task TASK_ID... | --project ID [--function-url URL] [--resume] [--xml FILE]
    python -m tools evaluate --annotations FILE --images DIR [--detections FILE | --gt-boxes]

Each command is a module (tools/predict.py, call.py, serve.py, annotate_task.py, evaluate.py) with
``add_arguments(parser)`` and ``run(args) -> int``, registered with its help in :data:`COMMANDS`; only the
command that runs is imported, and the model only when the command loads it: ``call`` and ``serve`` hold
no model and import no PyTorch (``serve``'s workers do), and ``predict``, ``annotate-task`` and
``evaluate`` answer ``--help``, a mistyped flag or a bad setting without PyTorch or OpenCV (the tables
their flags are made of are data that import neither). ``predict`` reads the same ``ALPHAPOSE_*``
variables as the function (flags override them) and answers with the same formats; ``call`` posts
exactly what CVAT posts; ``serve`` runs main.py behind a local stand-in for Nuclio's HTTP trigger.
``python -m alphapose.weights`` downloads the official weights.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from alphapose.errors import CommandLineParser, SyntheticWeightsWarning
from tools.errors import CommandError

# command -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("tools.predict", "run the model on image files, or track persons through a video"),
    "call": ("tools.call", "post an image to a deployed function as CVAT does"),
    "serve": ("tools.serve", "serve main.handler over HTTP like a Nuclio HTTP trigger"),
    "annotate-task": (
        "tools.annotate_task",
        "track persons over CVAT tasks' frames and upload skeleton tracks",
    ),
    "evaluate": ("tools.evaluate", "COCO keypoint AP of the pipeline on an annotated image set"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a :class:`CommandError` (anything the user can fix) is one line on stderr."""
    return run(parse(sys.argv[1:] if argv is None else list(argv)))


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed. Words that no flag of the command takes are refused by the command's own parser,
    so that the line names the command (argparse leaves them to the top-level parser). Nothing at all
    asks what there is: the commands are listed (on stderr, status 2, as for any command line not run)."""
    parser = build_parser(argv)
    if not argv:
        parser.print_help(sys.stderr)
        sys.exit(2)
    args, extras = parser.parse_known_args(argv)
    if extras:
        args.command_parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def run(args: argparse.Namespace) -> int:
    """Run parsed arguments' command (:func:`main` after :func:`parse`)."""
    command: Callable[[argparse.Namespace], int] = args.command
    with warnings.catch_warnings():  # restores both settings below when the command ends
        warnings.simplefilter("default", SyntheticWeightsWarning)  # once per run and directory
        warnings.showwarning = _show_warning(warnings.showwarning)
        try:
            return command(args)
        except CommandError as exc:
            return exc.report()


def _show_warning(show: Callable[..., None]) -> Callable[..., None]:
    """``show``, except that the library's synthetic-weights warning is one line: ``warning: ...``."""

    def shown(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, SyntheticWeightsWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)

    return shown


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of every command, with the arguments of the one ``argv`` names (its module imported
    here); the others list their help only."""
    parser = CommandLineParser(
        prog="python -m tools",
        description="Run the function's model locally, call a deployed function, or serve it.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    chosen = next((word for word in argv if not word.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(command=module.run, command_parser=command)
    return parser
