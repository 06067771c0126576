"""``python -m tools``: run the function's model locally, call a deployed function, or serve it.

    python -m tools predict IMAGE... [--out results.json] [--render out.png|DIR] [--format cvat|coco]
    python -m tools call URL IMAGE [--threshold T] [--render out.png] [--out answer.json]
    python -m tools serve [--host 127.0.0.1] [--port 8080] [--workers N]

``predict`` reads the same ``ALPHAPOSE_*`` variables as the function (flags override them) and answers
with the same formats; ``call`` posts exactly what CVAT posts; ``serve`` runs main.py behind a local
stand-in for Nuclio's HTTP trigger. ``python -m alphapose.weights`` downloads the official weights.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alphapose.cvat.config import Config
from alphapose.cvat.errors import ConfigError, RequestError
from alphapose.cvat.request import OUTPUT_FORMATS, allow_large_images, decode_image
from alphapose.errors import WeightsError
from tools.server import http

CVAT_REQUEST_TIMEOUT = 120.0  # seconds; CVAT's default CVAT_NUCLIO_DEFAULT_TIMEOUT
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools",
        description="Run the function's model locally, call a deployed function, or serve it.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="run the model on image files")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    predict.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    predict.add_argument(
        "--render", type=Path, help="draw the skeletons: an image file (one input) or a directory"
    )
    predict.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="cvat",
        help="cvat: {image path: [skeletons]}; coco: AlphaPose's results list (default: %(default)s)",
    )
    predict.add_argument("--threshold", type=float, default=0.0, help="minimum person (box) score")
    _add_model_options(predict)
    predict.set_defaults(command=_predict)

    call = commands.add_parser("call", help="post an image to a deployed function as CVAT does")
    call.add_argument("url", help="the function's HTTP address, e.g. http://localhost:32768")
    call.add_argument("image", type=Path)
    call.add_argument("--threshold", type=float, default=0.0, help="sent only when non-zero, as CVAT does")
    call.add_argument("--out", type=Path, help="write the answer here instead of stdout")
    call.add_argument("--render", type=Path, help="draw the answer on the image into this file")
    call.add_argument(
        "--timeout", type=float, default=CVAT_REQUEST_TIMEOUT, help="seconds (default: %(default)s)"
    )
    call.set_defaults(command=_call)

    serve = commands.add_parser("serve", help="serve main.handler over HTTP like a Nuclio HTTP trigger")
    http.add_arguments(serve)
    serve.set_defaults(command=_serve)
    return parser


# Flags of `predict` that override the function's settings (the ALPHAPOSE_* variable of the same name).
_SETTING_FLAGS = (
    "--weights-dir",
    "--preset",
    "--detector",
    "--device",
    "--detector-size",
    "--flip",
    "--keypoint-threshold",
    "--precision",
    "--engine",
)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-dir", help="directory of the weights files (ALPHAPOSE_WEIGHTS_DIR)")
    parser.add_argument("--preset", help="pose model, e.g. fastpose_res50_halpe26 (ALPHAPOSE_PRESET)")
    parser.add_argument("--detector", help="person detector, e.g. yolov3-spp (ALPHAPOSE_DETECTOR)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (ALPHAPOSE_DEVICE)")
    parser.add_argument(
        "--detector-size", help="detector input size, a multiple of 32 (ALPHAPOSE_DETECTOR_SIZE)"
    )
    parser.add_argument(
        "--flip", action="store_const", const="1", help="average in the mirrored crops (ALPHAPOSE_FLIP=1)"
    )
    parser.add_argument(
        "--keypoint-threshold", help="keypoints below it are outside (ALPHAPOSE_KEYPOINT_THRESHOLD)"
    )
    parser.add_argument(
        "--precision",
        help="auto, fp32, bf16 or fp16; bf16 is refused on a CPU without AMX or AVX512-BF16 "
        "(ALPHAPOSE_PRECISION)",
    )
    parser.add_argument(
        "--engine",
        help="torch, onnxruntime or openvino (CPU), or detector=NAME,pose=NAME (ALPHAPOSE_ENGINE)",
    )


def _predict(args: argparse.Namespace) -> int:
    from alphapose.cvat.formats import coco_results, cvat_skeletons
    from alphapose.runtime import configure_cpu_threads

    if args.render and args.render.suffix.lower() in IMAGE_SUFFIXES and len(args.images) > 1:
        print(
            f"error: --render {args.render} names one file but there are {len(args.images)} images",
            file=sys.stderr,
        )
        return 2
    flags = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in _SETTING_FLAGS}
    try:
        config = Config.from_env(flags={flag: value for flag, value in flags.items() if value})
        configure_cpu_threads()
        allow_large_images(config.max_pixels)
        pipeline = config.load_pipeline()
    except (ConfigError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cvat_answers: dict[str, list[dict[str, Any]]] = {}
    coco_answers: list[dict[str, Any]] = []
    for path in args.images:
        try:
            image = decode_image(path.read_bytes(), max_pixels=config.max_pixels)
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        except RequestError as exc:
            print(f"error: cannot use {path} as an image: {exc.detail}", file=sys.stderr)
            return 1
        poses = pipeline(image)
        skeletons = cvat_skeletons(
            poses,
            pipeline.skeleton,
            threshold=args.threshold,
            keypoint_threshold=config.keypoint_thresholds(pipeline.preset),
        )
        cvat_answers[str(path)] = skeletons
        coco_answers += coco_results(poses, threshold=args.threshold, image_id=path.name)
        print(f"{path}: {len(skeletons)} person(s)", file=sys.stderr)
        if args.render:
            _render(image, skeletons, _render_path(args.render, path))
    _write_json(cvat_answers if args.format == "cvat" else coco_answers, args.out)
    return 0


def _call(args: argparse.Namespace) -> int:
    import requests

    payload: dict[str, Any] = {"image": base64.b64encode(args.image.read_bytes()).decode("ascii")}
    if args.threshold:
        payload["threshold"] = args.threshold
    try:
        reply = requests.post(args.url, json=payload, timeout=args.timeout)
    except requests.RequestException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if reply.status_code != 200:
        print(f"error: HTTP {reply.status_code}: {reply.text}", file=sys.stderr)
        return 1
    answer = reply.json()
    print(f"{args.image}: {len(answer)} person(s)", file=sys.stderr)
    if args.render:
        _render(decode_image(args.image.read_bytes(), max_pixels=sys.maxsize), answer, args.render)
    _write_json(answer, args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    return http.serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        handler=args.handler,
        max_body_size=args.max_body_size,
        availability_timeout=args.worker_availability_timeout,
        event_timeout=args.event_timeout,
    )


def _render_path(target: Path, image: Path) -> Path:
    """``target`` itself when it names an image file, else ``<target>/<image stem>.png``."""
    return target if target.suffix.lower() in IMAGE_SUFFIXES else target / f"{image.stem}.png"


def _render(image: Any, skeletons: list[dict[str, Any]], path: Path) -> None:
    from tools.render import draw_skeletons, save_rgb

    save_rgb(path, draw_skeletons(image, skeletons))
    print(f"rendered {path}", file=sys.stderr)


def _write_json(data: Any, out: Path | None) -> None:
    text = json.dumps(data, indent=2)
    if out is None:
        print(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
