"""Load test of the local server: many concurrent CVAT-like clients against a few worker processes.

    python -m bench.load [--clients 50] [--requests 4] [--workers 2] [--detector-size 320]
                         [--worker-availability-timeout 600] [--weights-dir DIR] [--device auto]

The server is ``python -m alphapose serve``, which runs ``main.py`` as Nuclio's HTTP trigger does. With
more clients than workers, requests queue for a free worker; each waits at most the worker-availability
timeout (Nuclio's ``workerAvailabilityTimeoutMilliseconds``, 10 s by default) and then gets 503. Here
the queue is about clients / workers requests deep, so the default timeout is raised to keep every good
request answered; the output says how many requests waited longer than Nuclio's 10 s and would have got
503 from a function deployed with that default.

Every request carries an image of a size no other request has and asks for the COCO format with its
own ``image_id``. The synthetic weights' detector finds one person whose box is the whole image, so an
answer whose ``image_id`` and ``box`` ([0, 0, width, height]) match proves it belongs to its request:
no lost, duplicated or swapped answers. Figures go to stdout and ``bench/results/load-<device>.json``;
the exit status is 1 when a request went unanswered, failed or got someone else's answer.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

from alphapose.errors import CommandLineParser, run_command
from bench.cpu import cpu_model, load_average
from tools.server.process import ServerProcess

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPOSITORY / "bench" / "results"
NUCLIO_AVAILABILITY_TIMEOUT = 10.0  # seconds, Nuclio's default workerAvailabilityTimeoutMilliseconds
BOX_TOLERANCE = 0.5  # pixels; sizes of different requests differ by at least 1
SERVER_START_TIMEOUT = 600.0  # seconds for every worker to load the model


# --- shared with bench.soak ---------------------------------------------------------------------------


@contextmanager
def weights_directory(given: Path | None, preset: str) -> Iterator[Path]:
    """``given``, or synthetic official-format weights (one person per image) in a temporary directory."""
    if given is not None:
        yield given
        return
    from tools.synthetic_weights import write_synthetic_weights

    with tempfile.TemporaryDirectory(prefix="alphapose-weights-") as directory:
        print(f"writing synthetic weights for {preset} to {directory}", file=sys.stderr)
        yield write_synthetic_weights(directory, (preset,), persons=True)


def start_server(env: Mapping[str, str], log_path: Path, options: Sequence[str]) -> ServerProcess:
    """The local server with ``options``, or RuntimeError with its log when it did not start."""
    server = ServerProcess(env, log_path, *options, start_timeout=SERVER_START_TIMEOUT)
    if server.url is None:
        server.stop()
        raise RuntimeError(f"the server did not start; its log:\n{server.log_tail()}")
    return server


def server_env(weights: Path, detector_size: int, device: str, preset: str, threads: int) -> dict[str, str]:
    """The function's variables, and ``OMP_NUM_THREADS`` (PyTorch's threads per worker) unless 0."""
    env = {
        "ALPHAPOSE_WEIGHTS_DIR": str(weights),
        "ALPHAPOSE_DETECTOR_SIZE": str(detector_size),
        "ALPHAPOSE_DEVICE": device,
        "ALPHAPOSE_PRESET": preset,
    }
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def threads_per_worker(requested: int | None, workers: int) -> int:
    """``requested``, or the usable cores shared out between the workers.

    Each worker process has its own PyTorch thread pool, one thread per core by default: W workers
    would run W threads per core, and every parallel step waits for its slowest thread.
    """
    if requested is not None:
        return requested
    return max(1, len(os.sched_getaffinity(0)) // workers)


def device_slug(device: str) -> str:
    """``cpu``, or the GPU's name in lower case with dashes (``nvidia-h100-80gb-hbm3``) for file names."""
    if not device.startswith("cuda"):
        return device
    import torch

    name = torch.cuda.get_device_name(int(device.partition(":")[2] or 0))
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def image_png(width: int, height: int, seed: int) -> bytes:
    """A smooth picture of the given size (small PNG files whatever the size)."""
    y, x = np.mgrid[0:height, 0:width]
    phase = seed % 97
    image = np.stack([(x * 3 + phase) % 256, (y * 2 + phase) % 256, ((x + y) // 2) % 256], axis=2)
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def coco_request(width: int, height: int, image_id: str) -> bytes:
    """A request body for a ``width`` x ``height`` image that asks for the COCO format."""
    image = base64.b64encode(image_png(width, height, seed=width * 7919 + height)).decode("ascii")
    return json.dumps({"image": image, "format": "coco", "image_id": image_id}).encode("utf-8")


def coco_problem(answer: Any, width: int, height: int, image_id: str) -> str | None:
    """Why an answer is not the one person of its own request, or None when it is."""
    if not isinstance(answer, list) or len(answer) != 1 or not isinstance(answer[0], dict):
        return f"expected one person, got {str(answer)[:80]}"
    person = answer[0]
    if person.get("image_id") != image_id:
        return f"image_id {person.get('image_id')!r}, sent {image_id!r}"
    box = person.get("box")
    if not isinstance(box, list) or len(box) != 4:
        return f"box {box!r}"
    if any(abs(got - want) > BOX_TOLERANCE for got, want in zip(box, (0, 0, width, height), strict=True)):
        return f"box {box}, the image is {width}x{height}"
    return None


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p90": float(np.percentile(array, 90)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
        "mean": float(array.mean()),
    }


def machine() -> dict[str, Any]:
    """What the figures depend on besides the code, and the load average as they are written (the run's
    own work included: above the worker count, other work shared the CPUs)."""
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_end": load_average(),
    }


def finish(
    kind: str,
    device: str,
    results: dict[str, Any],
    out: Path | None,
    report: Callable[[dict[str, Any], Path], None],
    server_log: str,
) -> int:
    """Write the results file and print the report, with the server's log when a check failed; the exit
    status of the script."""
    path = write_results(kind, device, results, out)
    report(results, path)
    if not results["ok"]:
        print("server log tail:\n" + server_log, file=sys.stderr)
    return 0 if results["ok"] else 1


def write_results(kind: str, device: str, results: dict[str, Any], out: Path | None) -> Path:
    path = out or RESULTS_DIR / f"{kind}-{device_slug(device)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


# --- the load test -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    client: int
    index: int
    status: int | None  # None: no answer (timeout, connection error)
    seconds: float
    problem: str | None


def plan(client: int, index: int) -> tuple[int, int, str, bytes]:
    """Width, height, image_id and body of one request: its size is unique to it."""
    width, height, image_id = 160 + client, 120 + index, f"client{client}-request{index}"
    return width, height, image_id, coco_request(width, height, image_id)


def run_client(
    url: str,
    client: int,
    bodies: Sequence[tuple[int, int, str, bytes]],
    timeout: float,
    start: threading.Barrier,
    outcomes: list[Outcome],
) -> None:
    """Send this client's requests one after another, as one CVAT annotation job does."""
    session = requests.Session()
    start.wait()
    for index, (width, height, image_id, body) in enumerate(bodies):
        began = time.perf_counter()
        try:
            reply = session.post(
                url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
            )
        except requests.RequestException as exc:
            outcomes.append(Outcome(client, index, None, time.perf_counter() - began, f"no answer: {exc}"))
            continue
        seconds = time.perf_counter() - began
        if reply.status_code != 200:
            problem = f"HTTP {reply.status_code}: {reply.text[:120]}"
        else:
            problem = coco_problem(reply.json(), width, height, image_id)
        outcomes.append(Outcome(client, index, reply.status_code, seconds, problem))


def single_request_seconds(url: str, count: int = 3) -> float:
    """Median time of a request alone on the server: its processing time, no queueing."""
    times = []
    for index in range(count):
        body = coco_request(150 + index, 100, f"alone-{index}")
        began = time.perf_counter()
        requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=600)
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def run_load(args: argparse.Namespace) -> int:
    bound = args.worker_availability_timeout + args.event_timeout
    client_timeout = bound + 60.0  # longer than any answer can legitimately take: a timeout is a hang
    bodies = [[plan(client, index) for index in range(args.requests)] for client in range(args.clients)]
    with (
        weights_directory(args.weights_dir, args.preset) as weights,
        tempfile.TemporaryDirectory(prefix="alphapose-load-") as scratch,
    ):
        options = [
            "--workers",
            str(args.workers),
            "--worker-availability-timeout",
            str(args.worker_availability_timeout),
            "--event-timeout",
            str(args.event_timeout),
        ]
        threads = threads_per_worker(args.threads, args.workers)
        env = server_env(weights, args.detector_size, args.device, args.preset, threads)
        print(f"starting {args.workers} workers (detector size {args.detector_size})...", file=sys.stderr)
        with start_server(env, Path(scratch) / "server.log", options) as server:
            health = server.health()
            alone = single_request_seconds(server.url)
            print(f"one request alone: {alone:.3f} s; {args.clients} clients x {args.requests} requests...")
            outcomes: list[Outcome] = []
            start = threading.Barrier(args.clients + 1)
            threads = [
                threading.Thread(
                    target=run_client,
                    args=(server.url, client, bodies[client], client_timeout, start, outcomes),
                )
                for client in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            start.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - began
            idle_after = server.health()["idle_workers"]
            server_log = server.log_tail()
    results = summarise(args, health, outcomes, wall, alone, bound, idle_after)
    return finish("load", health["device"], results, args.out, report, server_log)


def summarise(
    args: argparse.Namespace,
    health: dict[str, Any],
    outcomes: Sequence[Outcome],
    wall: float,
    alone: float,
    bound: float,
    idle_after: int,
) -> dict[str, Any]:
    sent = args.clients * args.requests
    answered = [o for o in outcomes if o.status is not None]
    keys = Counter((o.client, o.index) for o in outcomes)
    latencies = [o.seconds for o in answered]
    waits = [max(0.0, o.seconds - alone) for o in answered]
    problems = [f"client {o.client} request {o.index}: {o.problem}" for o in outcomes if o.problem]
    over_bound = [o for o in answered if o.seconds > bound]
    ok = (
        len(outcomes) == sent
        and all(count == 1 for count in keys.values())
        and not problems
        and not over_bound
        and idle_after == args.workers
    )
    return {
        "device": health["device"],
        "device_slug": device_slug(health["device"]),
        "preset": health["preset"],
        "detector_size": args.detector_size,
        "workers": args.workers,
        "threads_per_worker": health["threads"],
        "clients": args.clients,
        "requests_per_client": args.requests,
        "worker_availability_timeout_s": args.worker_availability_timeout,
        "event_timeout_s": args.event_timeout,
        "machine": machine(),
        "requests": sent,
        "answered": len(answered),
        "unanswered": sent - len(answered),
        "statuses": {
            str(status): count for status, count in sorted(Counter(o.status for o in answered).items())
        },
        "wrong_answers": sum(1 for o in answered if o.status == 200 and o.problem),
        "idle_workers_after": idle_after,
        "single_request_s": alone,
        "latency_s": percentiles(latencies),
        "queue_wait_s": percentiles(waits),
        "throughput_rps": len(answered) / wall if wall > 0 else 0.0,
        "wall_s": wall,
        "answer_bound_s": bound,
        "answers_over_bound": len(over_bound),
        "waits_over_nuclio_default": sum(1 for wait in waits if wait > NUCLIO_AVAILABILITY_TIMEOUT),
        "problems": problems[:20],
        "ok": ok,
    }


def report(results: dict[str, Any], path: Path) -> None:
    latency, wait = results["latency_s"], results["queue_wait_s"]
    print(
        f"device {results['device']}, {results['workers']} workers of {results['threads_per_worker']} "
        f"threads, detector {results['detector_size']}, "
        f"{results['clients']} clients x {results['requests_per_client']} requests"
    )
    print(
        f"answered {results['answered']}/{results['requests']}, statuses {results['statuses']}, "
        f"wrong answers {results['wrong_answers']}, idle workers after {results['idle_workers_after']}"
    )
    if latency:
        print(
            "latency s: "
            + ", ".join(f"{key} {latency[key]:.2f}" for key in ("p50", "p90", "p99", "max", "mean"))
        )
        print(f"queue wait s: p50 {wait['p50']:.2f}, max {wait['max']:.2f}")
    print(f"throughput {results['throughput_rps']:.2f} requests/s over {results['wall_s']:.1f} s")
    print(
        f"every answer within availability timeout + event timeout ({results['answer_bound_s']:g} s): "
        f"{results['answers_over_bound'] == 0}"
    )
    print(
        f"{results['waits_over_nuclio_default']} requests waited more than {NUCLIO_AVAILABILITY_TIMEOUT:g} s "
        "for a worker: a function with Nuclio's default workerAvailabilityTimeoutMilliseconds would have "
        f"answered them 503 (this run waits up to {results['worker_availability_timeout_s']:g} s)"
    )
    for problem in results["problems"]:
        print(f"  {problem}")
    print(f"{'OK' if results['ok'] else 'FAILED'}; results in {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m bench.load", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default: %(default)s)")
    parser.add_argument(
        "--requests",
        type=int,
        default=4,
        help="requests per client, one after another (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument(
        "--detector-size", type=int, default=320, help="ALPHAPOSE_DETECTOR_SIZE (default: %(default)s)"
    )
    parser.add_argument("--device", default="auto", help="ALPHAPOSE_DEVICE (default: %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS, PyTorch threads per worker; 0 leaves the function's own choice "
        "(default: the usable cores divided by the workers)",
    )
    parser.add_argument(
        "--preset", default="fastpose_res50_coco", help="ALPHAPOSE_PRESET (default: %(default)s)"
    )
    parser.add_argument(
        "--weights-dir", type=Path, help="official weights; default: synthetic ones in a temporary directory"
    )
    parser.add_argument(
        "--worker-availability-timeout",
        type=float,
        default=600.0,
        help="seconds a request may wait for a free worker, as Nuclio's "
        "workerAvailabilityTimeoutMilliseconds; long enough for the whole queue (default: %(default)s)",
    )
    parser.add_argument(
        "--event-timeout",
        type=float,
        default=60.0,
        help="seconds a worker may take for one request (the server's --event-timeout, Nuclio's "
        "eventTimeout); with the availability timeout it bounds every answer time (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="results file (default: bench/results/load-<device>.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_load(build_parser().parse_args(argv))


if __name__ == "__main__":
    run_command(main, "bench.load")
