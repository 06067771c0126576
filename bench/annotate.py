"""``annotate-task`` at scale: frames per second through ``--function-url``.

    python -m bench.annotate [--frames 24] [--workers 2] [--concurrency 1,2,4,8] [--detector-size 320]
                             [--out FILE]

One CVAT task of ``--frames`` 320x240 photo crops (the tests' stub CVAT server,
tests/helpers/cvat_server_stub.py, serves it as CVAT's API does) annotated by the real command with
``--function-url`` pointing at ``python -m tools serve --workers W`` (synthetic weights, one person per
frame, the CPU), once per concurrency after a warm-up run; the figure is the task's frames over the
command's wall time, upload included, with the workers' threads sharing the cores (bench.load's rule).
Results go to stdout and, with ``--out``, a JSON file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from alphapose.cvat.spec import label_spec
from alphapose.errors import CommandLineParser, run_command
from alphapose.pose.presets import DEFAULT_PRESET, get_preset
from bench.cpu import cpu_model, load_average
from bench.load import server_env, start_server, threads_per_worker, weights_directory
from tools.cli import main as tools_main

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))  # the stub CVAT server is a test double

from cvat_server_stub import ImageTask, cvat_labels, serve  # noqa: E402

PRESET = get_preset(DEFAULT_PRESET)
SIZE = (320, 240)


def photo_frames(count: int) -> list[tuple[str, bytes]]:
    """``count`` PNG crops of the test photo, panning 4 px a frame."""
    with Image.open(ROOT / "tests" / "data" / "astronaut.jpg") as photo:
        rgb = photo.convert("RGB").resize((512 + 4 * count, 512))
    frames = []
    for number in range(count):
        buffer = io.BytesIO()
        rgb.crop((4 * number, 100, 4 * number + SIZE[0], 100 + SIZE[1])).save(buffer, format="PNG")
        frames.append((f"frame_{number:06d}.png", buffer.getvalue()))
    return frames


def make_task(task_id: int, frames: list[tuple[str, bytes]]) -> ImageTask:
    return ImageTask(task_id, cvat_labels(label_spec(PRESET.skeleton), task_id), frames, [SIZE] * len(frames))


def remote_rates(args: argparse.Namespace, checkpoints: Path) -> list[dict[str, Any]]:
    frames = photo_frames(args.frames)
    threads = threads_per_worker(None, args.workers)
    rows = []
    with weights_directory(args.weights_dir, PRESET.name) as weights:
        env = server_env(weights, args.detector_size, "cpu", PRESET.name, threads)
        server = start_server(env, checkpoints / "server.log", ("--workers", str(args.workers)))
        try:
            tasks = [make_task(100 + n, frames) for n in range(len(args.concurrency) + 1)]
            with serve(*tasks) as url:
                common = ["--server-host", url, "--checkpoint-dir", str(checkpoints)]
                # A first run warms the workers (first forwards allocate) and is not counted.
                _run(["annotate-task", str(tasks[0].task_id), *common, "--function-url", server.url])
                for task, concurrency in zip(tasks[1:], args.concurrency, strict=True):
                    load = load_average()
                    seconds = _run(
                        [
                            "annotate-task",
                            str(task.task_id),
                            *common,
                            *("--function-url", server.url, "--concurrency", str(concurrency)),
                        ]
                    )
                    rows.append(
                        {
                            "concurrency": concurrency,
                            "frames": args.frames,
                            "seconds": round(seconds, 3),
                            "fps": round(args.frames / seconds, 3),
                            "load_average": load,
                        }
                    )
                    print(f"concurrency {concurrency}: {args.frames / seconds:.2f} frames/s", file=sys.stderr)
        finally:
            server.stop()
    return rows


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    status = tools_main(argv)
    if status != 0:
        raise RuntimeError(f"annotate-task failed ({status}): {' '.join(argv)}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = CommandLineParser(prog="python -m bench.annotate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--concurrency", type=lambda text: [int(v) for v in text.split(",")], default=[1, 2, 4, 8]
    )
    parser.add_argument("--detector-size", type=int, default=320)
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alphapose-bench-annotate-") as directory:
        os.environ["CVAT_ACCESS_TOKEN"] = "bench"  # the stub server takes any token
        os.environ["XDG_CACHE_HOME"] = str(Path(directory) / "cache")  # the SDK's frame cache
        results = {
            "cpu": cpu_model(),
            "workers": args.workers,
            "detector_size": args.detector_size,
            "remote": remote_rates(args, Path(directory)),
        }
    print("| concurrency | frames/s | load average at start |\n|---:|---:|---:|")
    for row in results["remote"]:
        print(f"| {row['concurrency']} | {row['fps']:.2f} | {row['load_average']} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    run_command(main, "bench.annotate")
