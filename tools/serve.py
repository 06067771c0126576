"""``python -m tools serve``: main.handler over HTTP, like a Nuclio HTTP trigger (tools/server)."""

from __future__ import annotations

import argparse

from tools.server import http


def add_arguments(parser: argparse.ArgumentParser) -> None:
    http.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return http.serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        handler=args.handler,
        max_body_size=args.max_body_size,
        availability_timeout=args.worker_availability_timeout,
        event_timeout=args.event_timeout,
    )
