"""``python -m tools``: run the function's model locally, call a deployed function, or serve it.

    python -m tools predict IMAGE... [--out results.json] [--render out.png|DIR] [--format cvat|coco]
    python -m tools predict VIDEO|FRAMES_DIR [--out results.json] [--render out.mp4] [tracker flags]
    python -m tools predict VIDEOS_DIR --out DIR [--render DIR] [tracker flags]
    python -m tools call URL IMAGE [--threshold T] [--render out.png] [--out answer.json]
    python -m tools serve [--host 127.0.0.1] [--port 8080] [--workers N]
    python -m tools annotate-task TASK_ID... | --project ID [--function-url URL] [--resume] [--xml FILE]
    python -m tools evaluate --annotations FILE --images DIR [--detections FILE | --gt-boxes]

Each command is a module (tools/predict.py, call.py, serve.py, annotate_task.py, evaluate.py) with
``add_parser(commands)`` and ``run(args) -> int``, registered in :data:`COMMANDS`. ``predict`` reads the
same ``ALPHAPOSE_*`` variables as the function (flags override them) and answers with the same formats;
``call`` posts exactly what CVAT posts; ``serve`` runs main.py behind a local stand-in for Nuclio's
HTTP trigger. ``python -m alphapose.weights`` downloads the official weights.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from alphapose.errors import SyntheticWeightsWarning
from tools import annotate_task, call, evaluate, predict, serve
from tools.errors import CommandError

COMMANDS = (predict, call, serve, annotate_task, evaluate)  # each: add_parser(commands), run(args) -> int


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a :class:`CommandError` (anything the user can fix) is one line on stderr."""
    args = build_parser().parse_args(argv)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools",
        description="Run the function's model locally, call a deployed function, or serve it.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser
