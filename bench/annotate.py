"""``annotate-task`` at scale: frames per second through ``--function-url``, and what resuming costs.

    python -m bench.annotate [--frames 24] [--workers 2] [--concurrency 1,2,4,8] [--detector-size 320]
                             [--resume-frames 300] [--out FILE]

Part 1: one CVAT task of ``--frames`` 320x240 photo crops (the tests' stub CVAT server,
tests/cvat_server_stub.py, serves it as CVAT's API does) annotated by the real command with
``--function-url`` pointing at ``python -m tools serve --workers W`` (synthetic weights, one person per
frame, the CPU), once per concurrency; the figure is the task's frames over the command's wall time,
upload included, with the workers' threads sharing the cores (bench.load's rule).

Part 2: what the checkpoint costs, model aside: a task of ``--resume-frames`` frames with a stand-in
estimator (four persons a frame, no computing) annotated without a checkpoint and with one (each frame
appended and synced), medians of runs in turns; then the same task resumed from a checkpoint holding
every frame (read back, tracked again, uploaded). Results go to stdout and, with ``--out``, a JSON file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.load import server_env, start_server, threads_per_worker, weights_directory
from bench.measure import cpu_model, load_average
from tools.cli import main as tools_main

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the stub CVAT server lives with the tests

from cvat_server_stub import ImageTask, cvat_labels, serve  # noqa: E402

from alphapose.cvat.spec import label_spec  # noqa: E402
from alphapose.pose.presets import DEFAULT_PRESET, get_preset  # noqa: E402
from alphapose.structures import Pose, pose_score  # noqa: E402

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


class StandIn:
    """Four persons a frame, walking; no computing: what is left is the command's own cost."""

    skeleton = PRESET.skeleton

    def poses(self, frames: Iterable[tuple[int, Any]]) -> Iterator[list[Pose]]:
        template = np.random.default_rng(0).uniform(-30, 30, (self.skeleton.num_keypoints, 2))
        for frame, _ in frames:
            poses = []
            for person in range(4):
                points = (template + np.array([60 + 70 * person + 2 * frame, 120])).astype(np.float32)
                scores = np.full(self.skeleton.num_keypoints, 0.9, dtype=np.float32)
                box = np.array([*points.min(axis=0), *points.max(axis=0)], dtype=np.float32)
                poses.append(Pose(box, 0.9, points, scores, pose_score(scores, 0.9)))
            yield poses


def resume_costs(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    from cvat_sdk import Client, Config

    from alphapose.pose.skeletons import oks_sigmas
    from alphapose.tracking import PoseTracker
    from tools.annotate_task import annotate, open_task
    from tools.checkpoint import TaskCheckpoint

    tiny = io.BytesIO()
    Image.new("RGB", (64, 48)).save(tiny, format="PNG")
    frames = [(f"f{n:06d}.png", tiny.getvalue()) for n in range(args.resume_frames)]
    task = make_task(200, frames)
    task.sizes = [(64, 48)] * len(frames)
    settings = {"bench": True}
    times: dict[str, list[float]] = {"without": [], "with": []}
    with serve(task) as url:
        client = Client(url, config=Config(cache_dir=directory / "cache", status_check_period=0.01))
        opened = open_task(client, task.task_id, PRESET.skeleton.keypoints)

        def once(checkpoint: TaskCheckpoint | None) -> float:
            start = time.perf_counter()
            annotate(
                opened,
                StandIn(),
                PoseTracker(sigmas=oks_sigmas(PRESET.skeleton)),
                keypoint_threshold=0.4,
                upload=False,
                checkpoint=checkpoint,
            )
            return time.perf_counter() - start

        path = directory / "bench.checkpoint.jsonl"
        for _ in range(args.repeats):
            times["without"].append(once(None))
            path.unlink(missing_ok=True)
            checkpoint = TaskCheckpoint(path, settings, resume=False)
            times["with"].append(once(checkpoint))
            checkpoint.close()
        resumed = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            checkpoint = TaskCheckpoint(path, settings, resume=True)  # every frame done
            opening = time.perf_counter() - start
            resumed.append(once(checkpoint) + opening)
            checkpoint.close()
        size = path.stat().st_size
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    result = {
        "frames": args.resume_frames,
        "persons_per_frame": 4,
        "seconds_without_checkpoint": round(without, 4),
        "seconds_with_checkpoint": round(with_, 4),
        "checkpoint_ms_per_frame": round(1000 * (with_ - without) / args.resume_frames, 3),
        "resume_seconds_all_frames_done": round(statistics.median(resumed), 4),
        "checkpoint_bytes_per_frame": round(size / args.resume_frames),
        "load_average": load_average(),
    }
    print(json.dumps(result), file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.annotate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--concurrency", type=lambda text: [int(v) for v in text.split(",")], default=[1, 2, 4, 8]
    )
    parser.add_argument("--detector-size", type=int, default=320)
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--resume-frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-remote", action="store_true", help="only the checkpoint's costs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alphapose-bench-annotate-") as directory:
        os.environ["CVAT_ACCESS_TOKEN"] = "bench"  # the stub server takes any token
        os.environ["XDG_CACHE_HOME"] = str(Path(directory) / "cache")  # the SDK's frame cache
        results = {
            "cpu": cpu_model(),
            "workers": args.workers,
            "detector_size": args.detector_size,
            "remote": [] if args.skip_remote else remote_rates(args, Path(directory)),
            "resume": resume_costs(args, Path(directory)),
        }
    print("| concurrency | frames/s | load average at start |\n|---:|---:|---:|")
    for row in results["remote"]:
        print(f"| {row['concurrency']} | {row['fps']:.2f} | {row['load_average']} |")
    print(json.dumps(results["resume"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
