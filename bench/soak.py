"""Soak test: many requests, one after another, on one worker process; does anything leak?

    python -m bench.soak [--requests 1000] [--warmup 100] [--detector-size 160] [--bad-every 10]

Runs ``python -m alphapose serve --workers 1`` and watches its worker process from outside, through
/proc: resident memory (RSS), open file descriptors and threads. The first ``--warmup`` requests fill
the allocator's pools, PyTorch's thread pool and the caches; after them, RSS may grow by at most
``--max-rss-growth`` (5 %) and the descriptors and threads not at all. Requests cycle through a few
image sizes, and every ``--bad-every``-th one is a bad request from a fixed set, so the error paths
are soaked too; every good answer must be its own request's (COCO ``image_id`` and box, see
``bench.load``) and every bad one must get its documented status and code. The worker must still be
the same process at the end (a restart would hide a leak). Figures go to stdout and
``bench/results/soak-<device>.json``; the exit status is 1 when a limit is broken.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

from alphapose.errors import CommandLineParser, run_command
from bench.load import (
    coco_problem,
    coco_request,
    device_slug,
    finish,
    machine,
    server_env,
    start_server,
    threads_per_worker,
    weights_directory,
)

# A fixed set of bad requests and the answer each must get (README, "Errors").
BAD_REQUESTS: tuple[tuple[bytes, int, str], ...] = (
    (b'{"image": "not base64!"}', 400, "invalid_base64"),
    (json.dumps({"image": base64.b64encode(b"no image here").decode()}).encode(), 400, "invalid_image"),
    (b'{"image": "AAAA", "threshold": "high"}', 400, "invalid_threshold"),
    (b"{", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_body"),
)


@dataclass(frozen=True)
class Sample:
    """The worker process after ``requests`` requests."""

    requests: int
    rss_kib: int
    fds: int
    threads: int


def sample(pid: int, done: int) -> Sample:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return Sample(
        requests=done,
        rss_kib=int(status["VmRSS"].split()[0]),
        fds=len(list(Path(f"/proc/{pid}/fd").iterdir())),
        threads=int(status["Threads"]),
    )


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        width, _, height = item.strip().partition("x")
        sizes.append((int(width), int(height)))
    return sizes


def run_soak(args: argparse.Namespace) -> int:
    sizes = parse_sizes(args.sizes)
    with (
        weights_directory(args.weights_dir, args.preset) as weights,
        tempfile.TemporaryDirectory(prefix="alphapose-soak-") as scratch,
    ):
        threads = threads_per_worker(args.threads, 1)
        env = server_env(weights, args.detector_size, args.device, args.preset, threads)
        print(f"starting 1 worker (detector size {args.detector_size})...", file=sys.stderr)
        with start_server(env, Path(scratch) / "server.log", ["--workers", "1"]) as server:
            health = server.health()
            (pid,) = server.worker_pids()
            samples, problems, seconds = soak(server.url, pid, sizes, args)
            alive = Path(f"/proc/{pid}").exists() and server.worker_pids() == [pid]
            log_tail = server.log_tail()
    results = summarise(args, health, samples, problems, seconds, alive, threads)
    return finish("soak", health["device"], results, args.out, report, log_tail)


def soak(
    url: str, pid: int, sizes: Sequence[tuple[int, int]], args: argparse.Namespace
) -> tuple[list[Sample], list[str], list[float]]:
    """Send the requests one after another, sampling the worker every ``--sample-every`` requests."""
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    good = [(w, h, coco_request(w, h, f"{w}x{h}")) for w, h in sizes]
    samples = [sample(pid, 0)]
    problems: list[str] = []
    seconds: list[float] = []
    for index in range(1, args.requests + 1):
        began = time.perf_counter()
        if args.bad_every and index % args.bad_every == 0:
            body, status, error = BAD_REQUESTS[(index // args.bad_every) % len(BAD_REQUESTS)]
            reply = session.post(url, data=body, headers=headers, timeout=600)
            got = (reply.status_code, reply.json().get("error") if reply.status_code != 200 else None)
            problem = None if got == (status, error) else f"got {got}, expected {(status, error)}"
        else:
            width, height, body = good[index % len(good)]
            reply = session.post(url, data=body, headers=headers, timeout=600)
            problem = (
                coco_problem(reply.json(), width, height, f"{width}x{height}")
                if reply.status_code == 200
                else f"HTTP {reply.status_code}: {reply.text[:120]}"
            )
        seconds.append(time.perf_counter() - began)
        if problem:
            problems.append(f"request {index}: {problem}")
        if index == args.warmup or index % args.sample_every == 0 or index == args.requests:
            samples.append(sample(pid, index))
            if index % (args.sample_every * 8) == 0:
                print(f"  {index} requests, RSS {samples[-1].rss_kib / 1024:.1f} MiB", file=sys.stderr)
    return samples, problems, seconds


def summarise(
    args: argparse.Namespace,
    health: dict[str, Any],
    samples: Sequence[Sample],
    problems: Sequence[str],
    seconds: Sequence[float],
    alive: bool,
    threads: int,
) -> dict[str, Any]:
    baseline = next(s for s in samples if s.requests >= args.warmup)
    after = [s for s in samples if s.requests >= args.warmup]
    final = samples[-1]
    growth = (final.rss_kib - baseline.rss_kib) / baseline.rss_kib
    peak_growth = (max(s.rss_kib for s in after) - baseline.rss_kib) / baseline.rss_kib
    steps = np.array([s.requests for s in after], dtype=np.float64)
    slope = (
        float(np.polyfit(steps, [s.rss_kib for s in after], 1)[0]) * 1000 / 1024 if len(after) > 2 else 0.0
    )
    violations = []
    if growth > args.max_rss_growth:
        violations.append(f"RSS grew {growth:.1%} after warm-up, limit {args.max_rss_growth:.0%}")
    if final.fds > baseline.fds:
        violations.append(f"open fds grew from {baseline.fds} to {final.fds}")
    if final.threads > baseline.threads:
        violations.append(f"threads grew from {baseline.threads} to {final.threads}")
    if not alive:
        violations.append("the worker process was replaced or died")
    if problems:
        violations.append(f"{len(problems)} wrong answers")
    return {
        "device": health["device"],
        "device_slug": device_slug(health["device"]),
        "preset": health["preset"],
        "detector_size": args.detector_size,
        "threads": threads,
        "image_sizes": args.sizes,
        "bad_every": args.bad_every,
        "machine": machine(),
        "requests": args.requests,
        "warmup": args.warmup,
        "seconds_per_request": {
            "p50": float(np.percentile(seconds, 50)),
            "max": float(np.max(seconds)),
        },
        "rss_mib": {
            "start": samples[0].rss_kib / 1024,
            "after_warmup": baseline.rss_kib / 1024,
            "final": final.rss_kib / 1024,
            "peak_after_warmup": max(s.rss_kib for s in after) / 1024,
        },
        "rss_growth_after_warmup": growth,
        "rss_peak_growth_after_warmup": peak_growth,
        "rss_slope_mib_per_1000_requests": slope,
        "max_rss_growth": args.max_rss_growth,
        "fds": {"start": samples[0].fds, "after_warmup": baseline.fds, "final": final.fds},
        "threads_in_worker": {
            "start": samples[0].threads,
            "after_warmup": baseline.threads,
            "final": final.threads,
        },
        "same_worker_process": alive,
        "problems": list(problems[:20]),
        "violations": violations,
        "samples": [asdict(s) for s in samples],
        "ok": not violations,
    }


def report(results: dict[str, Any], path: Path) -> None:
    rss, fds, threads = results["rss_mib"], results["fds"], results["threads_in_worker"]
    print(
        f"device {results['device']}, detector {results['detector_size']}, {results['requests']} requests "
        f"(every {results['bad_every']}th bad), warm-up {results['warmup']}"
    )
    print(
        f"seconds per request: p50 {results['seconds_per_request']['p50']:.3f}, "
        f"max {results['seconds_per_request']['max']:.3f}"
    )
    print(
        f"RSS MiB: start {rss['start']:.1f}, after warm-up {rss['after_warmup']:.1f}, "
        f"final {rss['final']:.1f}, peak {rss['peak_after_warmup']:.1f}; "
        f"growth after warm-up {results['rss_growth_after_warmup']:+.2%} "
        f"(limit {results['max_rss_growth']:.0%}), "
        f"trend {results['rss_slope_mib_per_1000_requests']:+.2f} MiB per 1000 requests"
    )
    print(f"open fds: start {fds['start']}, after warm-up {fds['after_warmup']}, final {fds['final']}")
    print(
        f"threads: start {threads['start']}, after warm-up {threads['after_warmup']}, "
        f"final {threads['final']}"
    )
    print(f"same worker process throughout: {results['same_worker_process']}")
    for line in results["violations"] + results["problems"]:
        print(f"  {line}")
    print(f"{'OK' if results['ok'] else 'FAILED'}; results in {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--requests", type=int, default=1000, help="requests in all (default: %(default)s)")
    parser.add_argument(
        "--warmup", type=int, default=100, help="requests before the baseline sample (default: %(default)s)"
    )
    parser.add_argument(
        "--sample-every", type=int, default=25, help="requests between samples (default: %(default)s)"
    )
    parser.add_argument(
        "--bad-every",
        type=int,
        default=10,
        help="every Nth request is a bad one; 0: none (default: %(default)s)",
    )
    parser.add_argument(
        "--sizes",
        default="64x48,96x128,160x120,200x150,120x200",
        help="image sizes WxH the good requests cycle through (default: %(default)s)",
    )
    parser.add_argument(
        "--max-rss-growth",
        type=float,
        default=0.05,
        help="largest allowed RSS growth after warm-up, a fraction (default: %(default)s)",
    )
    parser.add_argument(
        "--detector-size", type=int, default=160, help="ALPHAPOSE_DETECTOR_SIZE (default: %(default)s)"
    )
    parser.add_argument("--device", default="auto", help="ALPHAPOSE_DEVICE (default: %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS; 0 leaves the function's own choice (default: the usable cores)",
    )
    parser.add_argument(
        "--preset", default="fastpose_res50_coco", help="ALPHAPOSE_PRESET (default: %(default)s)"
    )
    parser.add_argument(
        "--weights-dir", type=Path, help="official weights; default: synthetic ones in a temporary directory"
    )
    parser.add_argument("--out", type=Path, help="results file (default: bench/results/soak-<device>.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.warmup < args.requests:
        raise SystemExit("--warmup must be between 0 and --requests")
    return run_soak(args)


if __name__ == "__main__":
    run_command(main, "bench.soak")
