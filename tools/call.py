"""``python -m tools call``: post an image to a deployed function exactly as CVAT does."""

from __future__ import annotations

import argparse
import base64
import math
import sys
from pathlib import Path
from typing import Any

from alphapose.errors import ImageError
from alphapose.images import FRAME_SUFFIXES
from alphapose.images.decode import decode_image
from tools.errors import CommandError, check_threshold, http_url, network_errors, network_problem
from tools.output import check_writable, render_image, write_json
from tools.remote import CVAT_REQUEST_TIMEOUT, described


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the function's HTTP address, e.g. http://localhost:32768")
    parser.add_argument("image", type=Path)
    parser.add_argument("--threshold", type=float, default=0.0, help="sent only when non-zero, as CVAT does")
    parser.add_argument("--out", type=Path, help="write the answer here instead of stdout")
    parser.add_argument("--render", type=Path, help="draw the answer on the image into this file")
    parser.add_argument(
        "--timeout", type=float, default=CVAT_REQUEST_TIMEOUT, help="seconds (default: %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    import requests

    check_threshold("--threshold", args.threshold)
    if not http_url(args.url):
        raise CommandError(
            f"invalid URL {args.url!r}: give the function's HTTP address, e.g. http://localhost:32768"
        )
    if not 0 < args.timeout < math.inf:  # requests refuses 0, negatives and NaN, the socket infinity
        raise CommandError(f"invalid --timeout {args.timeout!r}: must be a number of seconds > 0")
    if args.render is not None and args.render.suffix.lower() not in FRAME_SUFFIXES:  # OpenCV's choice
        raise CommandError(f"--render {args.render}: name an image file ({', '.join(FRAME_SUFFIXES)})")
    for flag, path in (("--out", args.out), ("--render", args.render)):
        if path is not None:  # before the request, whose answer would be lost
            check_writable(flag, path)
    try:
        data = args.image.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.image}: {exc.strerror or exc}", 1) from None
    if args.render:  # decoded first: a file that cannot be drawn on is not worth a request
        try:
            image = decode_image(data, max_pixels=sys.maxsize, subject="the file")
        except ImageError as exc:
            raise CommandError(f"--render: cannot draw on {args.image}: {exc}", 1) from None
    payload: dict[str, Any] = {"image": base64.b64encode(data).decode("ascii")}
    if args.threshold:
        payload["threshold"] = args.threshold
    try:
        reply = requests.post(args.url, json=payload, timeout=args.timeout)
    except network_errors() as exc:
        waited = f" within --timeout {args.timeout:g} s" if isinstance(exc, requests.Timeout) else ""
        raise CommandError(
            f"cannot reach the function at {args.url}: {network_problem(exc)}{waited}; check the URL "
            "and that the function runs (make serve locally; nuctl get function shows a deployed one's port)",
            1,
        ) from None
    except requests.RequestException as exc:
        raise CommandError(f"{args.url}: {exc}", 1) from None
    if reply.status_code != 200:
        raise CommandError(f"{args.url} answered {described(reply)}", 1)
    try:
        answer = reply.json()
    except ValueError:
        raise CommandError(
            f"{args.url} answered HTTP 200 without JSON: is it the function's address?", 1
        ) from None
    print(f"{args.image}: {len(answer)} person(s)", file=sys.stderr)
    if args.render:
        render_image(image, answer, args.render)
    write_json(answer, args.out)
    return 0
