"""Videos: frames per second through the whole path (the tracker's own time is in bench.tracking).

``python -m bench.video [--frames N] [--repeats N] [--threads N] [--device cpu] [--engine E] [--out FILE]``
(``make bench`` runs it), writing ``bench/results/video-<device>.json`` unless ``--out`` says otherwise.

* **Frames per second**: a 640x480 video (photo-like synthetic frames, MPEG-4 part 2 as AlphaPose's demo
  writes) read, detected, posed and tracked by :func:`alphapose.tracking.track_video`, in the
  configuration of the CPU function file ``function.yaml`` (its preset, detector and engine, read from
  ``tools.function_yaml``; fp32; ``--engine`` runs another engine, ``torch`` for PyTorch alone, the default
  on a GPU, where the runtimes do not run), with one frame per detector forward and with four (a warm-up
  run each, then medians of runs in turns).
  Synthetic weights find one person per frame. Also reported: decoding alone, and the detector alone on
  four frames at one and at four frames per forward (medians of runs in turns), which says whether
  batching frames pays on this device.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from alphapose.engines.threads import configure_cpu_threads
from alphapose.errors import CommandLineParser, run_command
from alphapose.images.video import FrameSource
from alphapose.pipeline import PosePipeline
from alphapose.tracking import PoseTracker, track_video
from bench.cpu import load_average
from bench.measure import device_label, environment, measure_interleaved
from bench.report import RESULTS
from tools.function_yaml import FUNCTION_FILES
from tools.synthetic_images import synthetic_photo

CPU_FILE = FUNCTION_FILES["function.yaml"]
PRESET, DETECTOR = CPU_FILE.preset, CPU_FILE.detector
SIZE = (640, 480)
FRAME_BATCHES = (1, 4)


def write_clip(path: Path, frames: int) -> Path:
    """A 640x480 clip: a photo-like frame panning a few pixels a frame, so every frame differs."""
    width, height = SIZE
    scene = synthetic_photo(width + 4 * frames, height, seed=5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, SIZE)
    for k in range(frames):
        writer.write(cv2.cvtColor(np.ascontiguousarray(scene[:, 4 * k : 4 * k + width]), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def engine_for(engine: str | None, device: str) -> str:
    """The engine asked for, else the CPU function file's on a CPU and PyTorch elsewhere (the runtimes
    run on the CPU only)."""
    if engine is not None:
        return engine
    return CPU_FILE.engine if torch.device(device).type == "cpu" else "torch"


def per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 2)


def video_rates(pipeline: PosePipeline, clip: Path, frames: int, repeats: int) -> dict[str, Any]:
    """Frames per second of decoding, of the detector by frames per forward, and of the whole path; the
    alternatives run in turns, so a busy spell of a shared machine hits them alike."""
    images = list(FrameSource(clip).images())
    rates: dict[str, Any] = {}
    start = time.perf_counter()
    decoded = sum(1 for _ in FrameSource(clip))
    rates["decode_fps"] = per_second(decoded, time.perf_counter() - start)
    group = images[: max(FRAME_BATCHES)]
    detector = pipeline.detector

    def detect(batch: int) -> None:
        with pipeline.precision.autocast():
            for k in range(0, len(group), batch):
                detector.detect_batch(group[k : k + batch])

    def whole(batch: int) -> None:
        for _ in track_video(pipeline, FrameSource(clip).images(), PoseTracker(), batch):
            pass

    device = pipeline.device
    detector_times = measure_interleaved({b: partial(detect, b) for b in FRAME_BATCHES}, repeats, 1, device)
    for batch, timing in detector_times.items():
        rates[f"detector_fps_batch_{batch}"] = per_second(len(group), timing.median_ms / 1000)
    whole_times = measure_interleaved({b: partial(whole, b) for b in FRAME_BATCHES}, repeats, 1, device)
    for batch, timing in whole_times.items():
        rates[f"end_to_end_fps_batch_{batch}"] = per_second(frames, timing.median_ms / 1000)
    return rates


def render(results: dict[str, Any]) -> str:
    rates = results["video"]
    lines = [
        f"Videos on {results['device']}, {results['environment']['torch_threads']} thread(s) "
        f"({results['frames']} frames of {SIZE[0]}x{SIZE[1]}, "
        f"{PRESET} + {DETECTOR}, engine {results['engine']}; load average {results['load_average_start']} "
        "at the start)",
        "",
        "| what | frames/s |",
        "|---|---|",
        f"| decode (OpenCV, FFmpeg) | {rates['decode_fps']} |",
    ]
    lines += [
        f"| detector, {b} frame(s) per forward | {rates[f'detector_fps_batch_{b}']} |" for b in FRAME_BATCHES
    ]
    lines += [
        f"| whole path (decode, detect, pose, track), {b} frame(s) per forward | "
        f"{rates[f'end_to_end_fps_batch_{b}']} |"
        for b in FRAME_BATCHES
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = CommandLineParser(prog="python -m bench.video", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=12, help="length of the clip (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per batch size (default: %(default)s)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="override the CPU thread count the pipeline chose")
    parser.add_argument(
        "--engine",
        help=f"what runs each network (default on a CPU: the CPU function files' {CPU_FILE.engine}; "
        "elsewhere torch)",
    )
    parser.add_argument("--out", type=Path, help="results JSON (default: bench/results/video-<device>.json)")
    args = parser.parse_args(argv)
    from tools.synthetic_weights import write_synthetic_weights

    configure_cpu_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    engine = engine_for(args.engine, args.device)
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="alphapose-bench-") as directory:
        print("[bench.video] synthetic weights and clip", file=sys.stderr, flush=True)
        weights = write_synthetic_weights(directory, (PRESET,), persons=True, detectors=(DETECTOR,))
        pipeline = PosePipeline.from_weights_dir(
            weights, preset=PRESET, detector=DETECTOR, device=args.device, engine=engine
        )
        clip = write_clip(Path(directory) / "clip.mp4", args.frames)
        print("[bench.video] frames per second", file=sys.stderr, flush=True)
        rates = video_rates(pipeline, clip, args.frames, args.repeats)
    results = {
        "device": device_label(device),
        "environment": environment(device),
        "frames": args.frames,
        "engine": engine,
        "load_average_start": load,
        "video": rates,
        "load_average_end": load_average(),
    }
    print(render(results))
    out = args.out or RESULTS / f"video-{results['device']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"[bench.video] wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    run_command(main, "bench.video")
