"""Cold start and memory of one function worker, measured in a fresh process as Nuclio starts one.

The parent notes the wall clock, starts ``python -m bench.coldstart``, and the child reports when it got
to each step: the runtime's imports, ``import main``, ``init_context`` done (the worker is ready), the
first answer (which pays one-off costs such as kernel selection), then one request per image size and a
20-person pose batch at the largest size. Peak RSS (and on CUDA the peak GPU memory) are those of the
worker process, the figure to multiply by the number of workers when sizing a node.
"""

from __future__ import annotations

import time

_PROCESS_START = time.time()  # first statement, before the heavy imports below

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent


def measure_cold_start(
    weights: Path,
    preset: str,
    device: str,
    detector_size: int | None,
    detector: str = "",
    engine: str = "",
    precision: str = "",
    calibration: Path | None = None,
) -> dict[str, Any]:
    """Run the child with the function's environment; its report with times from process start.

    ``detector``, ``engine`` and ``precision`` empty, ``calibration`` None: the function's defaults.
    """
    environ = {key: value for key, value in os.environ.items() if not key.startswith("ALPHAPOSE_")}
    environ.update(
        {
            "ALPHAPOSE_WEIGHTS_DIR": str(weights),
            "ALPHAPOSE_PRESET": preset,
            "ALPHAPOSE_DEVICE": device,
            "ALPHAPOSE_DETECTOR_SIZE": str(detector_size or ""),
            "ALPHAPOSE_DETECTOR": detector,
            "ALPHAPOSE_ENGINE": engine,
            "ALPHAPOSE_PRECISION": precision,
            "ALPHAPOSE_CALIBRATION_DIR": str(calibration or ""),
        }
    )
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.coldstart"],
        cwd=REPOSITORY,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the cold-start worker failed:\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    marks = report.pop("marks")
    report["seconds_from_process_start"] = {name: round(t - started, 3) for name, t in marks.items()}
    report["measured_with"] = "main.init_context with a nuclio_sdk Context, then main.handler"
    return report


def _context() -> Any:
    """A real ``nuclio_sdk.Context`` whose logger writes to a buffer, as the Python runtime builds it."""
    import nuclio_sdk

    logger = nuclio_sdk.Logger(logging.INFO, name="bench.coldstart")
    logger.set_handler("default", io.StringIO(), nuclio_sdk.logger.HumanReadableFormatter())
    return nuclio_sdk.Context(logger, nuclio_sdk.Platform("local"), 0, nuclio_sdk.TriggerInfo("http", "http"))


def _rss_mb() -> float:
    """Peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _memory_now_mb() -> dict[str, float]:
    """Resident memory now, and the part of it that is private to this process (anonymous memory: the
    weights, activations, heap) as opposed to shared library pages every worker maps once."""
    fields = {}
    with open("/proc/self/smaps_rollup") as file:
        for line in file:
            name, _, value = line.partition(":")
            if name in ("Rss", "Anonymous"):
                fields[name.lower()] = round(int(value.split()[0]) / 1024, 1)
    return fields


def _worker() -> dict[str, Any]:
    """The child: a function worker's life, with timestamps."""
    marks = {"interpreter": _PROCESS_START}
    import nuclio_sdk

    context = _context()
    marks["runtime_imported"] = time.time()
    sys.path.insert(0, str(REPOSITORY))
    import main

    marks["main_imported"] = time.time()
    main.init_context(context)
    marks["init_context_done"] = time.time()
    rss = {"after_init": _rss_mb()}
    memory_after_init = _memory_now_mb()

    import torch

    from bench.measure import IMAGE_SIZES, request_image
    from tools.synthetic_images import person_boxes, synthetic_photo

    requests = {}
    for index, size in enumerate(IMAGE_SIZES):
        payload = request_image(synthetic_photo(*size, seed=index))
        event = nuclio_sdk.Event(
            body={"image": payload}, content_type="application/json", _id=f"bench-{index}"
        )
        start = time.time()
        response = main.handler(context, event)
        if response.status_code != 200:
            raise RuntimeError(f"the handler answered {response.status_code}: {response.body}")
        name = f"{size[0]}x{size[1]}"
        requests[name] = round((time.time() - start) * 1000, 1)
        if index == 0:
            marks["first_answer"] = time.time()
        rss[f"after_{name}"] = _rss_mb()

    pipeline = context.user_data.model.pipeline
    width, height = IMAGE_SIZES[-1]
    boxes, scores = person_boxes(width, height, 20, seed=20)
    pipeline.estimate(synthetic_photo(width, height, seed=20), boxes, scores)
    rss["after_20_persons"] = _rss_mb()

    report: dict[str, Any] = {
        "marks": marks,
        "first_requests_ms": requests,
        "peak_rss_mb": rss,
        "memory_after_init_mb": memory_after_init,
        "memory_at_end_mb": _memory_now_mb(),
        "torch_threads": torch.get_num_threads(),
        "engines": {network: str(engine) for network, engine in pipeline.engines.items()},
    }
    if pipeline.device.type == "cuda":
        report["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        report["cuda_peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return report


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(json.dumps(_worker()))
