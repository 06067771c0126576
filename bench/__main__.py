"""Speed of the AlphaPose function on this machine: ``python -m bench [--quick] [--precision P]``.

Prints a markdown table and writes ``bench/results/<device>.json`` and ``.md`` (``-quick`` appended for
quick runs), e.g. ``cpu-amd-epyc-2threads.json`` or ``cuda-nvidia-h100-80gb-hbm3.json``. Weights are
official-format random ones unless ``--weights`` names a directory with real ones (the person count is
fixed by the benchmark either way): latency stage by stage, cold start and memory of a fresh worker, the
pose network of every preset, every detector. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from alphapose.detection.detectors import DETECTORS
from alphapose.engines import PRECISIONS
from alphapose.engines.threads import configure_cpu_threads
from alphapose.errors import CommandLineParser, OptionError, run_command
from alphapose.options import PipelineOptions
from alphapose.pipeline import PosePipeline
from alphapose.pose.presets import DEFAULT_PRESET, PRESETS
from bench.coldstart import measure_cold_start
from bench.cpu import load_average
from bench.latency import Plan, detector_rows, latency_table, preset_speeds
from bench.measure import device_label, environment, peak_rss_mb
from bench.report import RESULTS, render_markdown, write_report


def plan_for(device: torch.device, quick: bool) -> Plan:
    """Enough runs for a stable median; the CPU gets few because the detector alone takes ~1 s there."""
    if device.type == "cuda":
        return Plan(
            repeats=10 if quick else 30, warmup=3 if quick else 10, end_to_end_repeats=10 if quick else 30
        )
    return Plan(repeats=2 if quick else 5, warmup=1, end_to_end_repeats=2 if quick else 3)


@contextmanager
def weights_directory(given: Path | None, preset: str) -> Iterator[Path]:
    """``given``, or synthetic official-format weights in a temporary directory (every detector's)."""
    if given is not None:
        yield given
        return
    from tools.synthetic_weights import write_synthetic_weights

    with tempfile.TemporaryDirectory(prefix="alphapose-bench-") as directory:
        log(f"writing synthetic weights for {preset}")
        yield write_synthetic_weights(directory, (preset,), persons=True, detectors=DETECTORS)


_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench {time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement; returns the results JSON."""
    started = time.perf_counter()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the cold-start worker too
        torch.set_num_threads(args.threads)
    configure_cpu_threads()  # as the function's init_context does
    with weights_directory(args.weights, args.preset) as weights:
        cold = None
        if not args.no_cold_start:
            log("cold start (fresh worker process)")
            cold = measure_cold_start(
                weights, args.preset, args.device, args.detector_size, precision=args.precision
            )
        pipeline = PosePipeline.from_weights_dir(
            weights,
            preset=args.preset,
            device=args.device,
            detector_size=args.detector_size,
            precision=args.precision,
        )
        device = pipeline.device
        plan = plan_for(device, args.quick)
        env = environment(device)
        log(f"{env['device_name']} ({device}), {env['torch_threads']} threads, torch {env['torch']}")
        latency = latency_table(pipeline, plan, log)
        log("pose network of every preset")
        presets = preset_speeds(device, plan, log)
        detectors = None if args.no_detectors else detector_rows(weights, args.preset, args.device, plan, log)
    env["load_average_end"] = load_average()
    name = device_label(device) + (f"-{args.precision}" if args.precision != "auto" else "")
    name += "-quick" if args.quick else ""
    results: dict[str, Any] = {
        "schema": 1,
        "name": name,
        "preset": args.preset,
        "weights": "given" if args.weights else "synthetic",
        "environment": env,
        "plan": {
            "repeats": plan.repeats,
            "warmup": plan.warmup,
            "end_to_end_repeats": plan.end_to_end_repeats,
            "quick": args.quick,
        },
        "precision": {"main": pipeline.precision.describe()},
        "latency": latency,
        "presets": presets,
        "cold_start": cold,
        "detectors": detectors,
        "bench_process_peak_rss_mb": peak_rss_mb(),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    if device.type == "cuda":
        results["bench_process_cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = CommandLineParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu, cuda, cuda:N")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument(
        "--detector-size",
        type=int,
        help="detector input size (default: the detector's own, 608 for YOLOv3-SPP)",
    )
    parser.add_argument("--weights", type=Path, help="directory with real weights (default: synthetic)")
    parser.add_argument("--threads", type=int, help="override the CPU thread count the pipeline chose")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the fresh-process measurement")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=[name for name in PRECISIONS if name != "int8"],
        help="the networks' precision, as ALPHAPOSE_PRECISION sets it (run twice to compare two; int8 is "
        "measured by python -m bench.engines)",
    )
    parser.add_argument(
        "--no-detectors", action="store_true", help="skip the comparison of every detector of the table"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results directory (default: bench/results)"
    )
    args = parser.parse_args(argv)
    try:  # refused now, naming the flag, rather than in the cold-start worker after the weights are written
        PipelineOptions(
            preset=args.preset, device=args.device, detector_size=args.detector_size, precision=args.precision
        )
    except OptionError as exc:
        parser.error(exc.as_flag())
    results = run(args)
    json_path, md_path = write_report(results, args.out)
    print(render_markdown(results))
    log(f"wrote {json_path} and {md_path} in {results['bench_seconds']:.0f} s")


if __name__ == "__main__":
    run_command(main, "bench")
