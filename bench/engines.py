"""Every engine side by side on the CPU: ``python -m bench.engines [--quick]`` (``make bench`` runs it).

One run starts one worker process per engine holding the pipeline of the CPU function files (their
preset and detector), as a function worker holds one engine (runtimes sharing a process slow each other:
one's idle threads still spin while the next runs), and times the workers in turns (torch, onnxruntime,
openvino, torch, ...), each after a pause that lets the previous one's threads stop spinning, so a
busy spell of a shared machine hits every engine alike: each network alone
(the detector on its input, the pose network on 1 and 8 crops) and whole requests as the function
answers them (decode the JPEG, detect, pose stage on a fixed number of person boxes, CVAT JSON) at
640x480 with 1 and 5 persons and 1280x720 with 5. When the fastest engine of the detector is not that of
the pose network, that mix runs end to end too.

The same measurement runs a second time with workers under the AVX2 caps (:data:`tools.isa.AVX2_CAPS`), to
stand in for an AVX2-only CPU. What each runtime makes of the caps is recorded with the figures
(:data:`CAPPED_BY`): PyTorch and OpenVINO (whose oneDNN reads ``ONEDNN_MAX_CPU_ISA``; the compiled
graph's primitive types say ``avx2`` instead of ``avx512`` under it) honour them; ONNX Runtime's kernels
(MLAS) pick their instruction set from the CPU itself and have no setting or variable to lower it, so its
AVX2 column is its AVX-512 code and is marked so.

A third measurement gives each worker one thread (``OMP_NUM_THREADS=1``; the runtimes take PyTorch's
count): on a machine busy with other work, a two-thread PyTorch worker loses far more than the runtimes
(its OpenMP threads wait for each other at every layer, and a descheduled one stalls the other), while
one thread per worker compares the engines' arithmetic alone; the load average is recorded with each.

Each network row also gets its arithmetic rate (GFLOP/s: the PyTorch module's FLOPs, counted once, over
each engine's time, the same arithmetic for every engine), next to each runtime's own rate on a dense
product (:class:`DenseProduct`, a 2048x2048 matrix product in the worker's precision, exported and run
as the networks are): a runtime cannot run convolutions much faster than its best dense kernel, so the
two rates say how much any engine could still gain in that precision on this CPU.

On a CPU with bf16 units a fourth measurement runs each engine that takes bf16 (PyTorch with converted
weights, OpenVINO through its precision hint; ONNX Runtime refuses it) beside PyTorch in fp32, the
baseline of every ratio; its dense product runs in bf16 too.

With the int8 extra installed, int8 is measured the same way (OpenVINO's quantized models beside PyTorch
in fp32), natively and again under the AVX2 caps (a CPU without VNNI), each network quantized on
:data:`CALIBRATION_IMAGES` synthetic photos; its dense product is the matrix product quantized likewise,
so its rate is the runtime's int8 rate.

Cold start (:mod:`bench.coldstart`, a fresh function worker) is measured per runtime without a cached
export (the worker exports, as a first start outside the images does) and with one (as in the function
images, which export while they are built), beside PyTorch's; for int8, without a cached quantized model
(the worker exports and quantizes) and with one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from alphapose.engines import ENGINES
from alphapose.engines.export import CACHE_DIRECTORY, export_onnx
from alphapose.engines.precision import (
    CPU_UNIT_FLAGS,
    DTYPES,
    cpu_flags,
    missing_cpu_units,
    resolve_precision,
)
from alphapose.engines.threads import configure_cpu_threads
from alphapose.errors import CommandLineParser, run_command
from alphapose.pipeline import PosePipeline
from bench.coldstart import measure_cold_start
from bench.cpu import cpu_model
from bench.engine_measurements import INT8, KEYS, REDUCED, run_order
from bench.latency import answer
from bench.measure import (
    count_flops,
    detector_flops,
    environment,
    load_average,
    request_image,
    slug,
)
from tools.isa import AVX2_CAPS
from tools.synthetic_images import person_boxes, synthetic_photo

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"
# The CPU function files' networks (tools/function_yaml.py).
PRESET, DETECTOR = "fastpose_res50_coco", "yolox-s"
REQUESTS = (((640, 480), 1), ((640, 480), 5), ((1280, 720), 5))
POSE_CROPS = (1, 8)
CAPPED_BY = {
    "torch": "ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS",
    "onnxruntime": None,  # no setting: its AVX2 figures are its native (AVX-512) code
    "openvino": "ONEDNN_MAX_CPU_ISA",
}
# Idle time before each timed run: thread pools spin for a while after their work (OpenMP's wait policy,
# OpenVINO's TBB workers), and the next engine in turn must not run against the last one's spinning.
SETTLE_SECONDS = 0.3
FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "avx_vnni", "avx512_vnni")


# Runtimes whose dense product the caps do not reach: both run it with MLAS (OpenVINO's compiled graph
# names its MatMul ``gemm_mlas_f32``, under ONEDNN_MAX_CPU_ISA too), which picks its code from the CPU.
DENSE_NOT_CAPPED = ("onnxruntime", "openvino")
DENSE_SIZE = 2048
DENSE_LABEL = f"matrix product {DENSE_SIZE}x{DENSE_SIZE}"
CALIBRATION_IMAGES = 24  # synthetic 640x480 photos, as many as the first probe calibrated on
CALIBRATION = "calibration"  # their directory, beside the synthetic weights


class DenseProduct(nn.Module):
    """``x @ W`` for a square ``W``: the reference each engine runs to give its dense rate."""

    def __init__(self, size: int = DENSE_SIZE) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(size, size, generator=generator), requires_grad=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs @ self.weight

    def flops(self) -> int:
        size = self.weight.shape[0]
        return 2 * size**3


def dense_inputs() -> torch.Tensor:
    """The dense product's left operand: one sample of one ``DENSE_SIZE`` square matrix, seeded."""
    return torch.randn(1, 1, DENSE_SIZE, DENSE_SIZE, generator=torch.Generator().manual_seed(1))


def dense_product(engine: str, directory: Path, precision: str = "fp32") -> Callable[[], object]:
    """One dense product in ``engine`` (PyTorch itself, or its export compiled by the runtime), computed
    in ``precision`` (int8: the export quantized on its own operand)."""
    module = DenseProduct().eval()
    inputs = dense_inputs()
    if engine == "torch":
        dtype = DTYPES[precision]
        return partial(module.to(dtype), inputs.to(dtype))
    path = export_onnx(module, tuple(inputs.shape[1:]), directory / f"dense-{engine}.onnx")
    driver = ENGINES[engine].driver()
    if precision == INT8:
        path, export = directory / f"dense-{engine}-int8.xml", path
        driver.quantize(export, path, [inputs.numpy()])
    run = driver.compile_export(path, resolve_precision(precision, "cpu"), torch.get_num_threads())
    return partial(run, inputs.numpy())


def checked(product: Callable[[], object], precision: str) -> Callable[[], object]:
    """``product`` once it has computed what its rate claims, else RuntimeError: in fp32, within 1e-5 of
    the largest entry of the float64 product (OpenVINO's CPU plugin would pick bf16 on a CPU with the
    units, some thousand times further off); in int8, a relative RMS error of 8-bit operands (about 1.4%:
    each operand rounded to one of some 255 steps across its range), far above float32's."""
    if precision not in ("fp32", INT8):
        return product
    expected = (dense_inputs().double() @ DenseProduct().weight.double()).numpy()
    got = np.asarray(product(), dtype=np.float64)
    if got.shape != expected.shape:
        raise RuntimeError(f"the dense product's shape is {got.shape}, not {expected.shape}")
    if precision == "fp32":
        error = np.abs(got - expected).max() / np.abs(expected).max()
        within = error <= 1e-5
    else:
        error = np.sqrt(((got - expected) ** 2).mean() / (expected**2).mean())
        within = 1e-3 < error < 0.03
    if not within:
        raise RuntimeError(f"the dense product in {precision} is off by {error:.2e}: not that arithmetic")
    return product


def write_calibration(directory: Path) -> Path:
    """The synthetic photos int8 is calibrated on, as JPEG files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for seed in range(CALIBRATION_IMAGES):
        Image.fromarray(synthetic_photo(640, 480, seed=100 + seed)).save(directory / f"{seed:03d}.jpg")
    return directory


def network_flops(weights: Path) -> dict[str, int]:
    """FLOPs of one piece of each network row's work, counted on the PyTorch modules."""
    pipeline = PosePipeline.from_weights_dir(weights, preset=PRESET, detector=DETECTOR, device="cpu")
    size = pipeline.detector.input_size
    height, width = pipeline.preset.input_size
    labels = network_labels()
    per_crop = count_flops(pipeline.pose_model, torch.zeros(1, 3, height, width))
    return {
        labels[0]: detector_flops(pipeline.detector.model, DETECTOR, torch.zeros(1, 3, size, size)),
        **{label: count * per_crop for label, count in zip(labels[1:], POSE_CROPS, strict=True)},
        DENSE_LABEL: DenseProduct().flops(),
    }


def available_engines() -> list[str]:
    return [name for name, spec in ENGINES.items() if spec.package is None or find_spec(spec.package)]


def columns(precision: str) -> dict[str, tuple[str, str]]:
    """The workers of one measurement, column label -> (engine, precision): every engine in fp32, or
    PyTorch in fp32 (the baseline) beside every engine that takes ``precision``."""
    if precision == "fp32":
        return {name: (name, "fp32") for name in available_engines()}
    reduced = resolve_precision(precision, "cpu")
    takes = [
        name
        for name in available_engines()
        if (
            reduced.mode == "converted"
            if name == "torch"
            else ENGINES[name].driver().check_precision(reduced) is None
        )
    ]
    return {"torch": ("torch", "fp32"), **{f"{name} {precision}": (name, precision) for name in takes}}


def works(pipeline: PosePipeline) -> dict[str, Callable[[], object]]:
    """The pieces of work timed, by label: each network alone and whole requests."""
    cpu = torch.device("cpu")
    image = synthetic_photo(1280, 720)
    squares = pipeline.detector.family.prepare([image], pipeline.detector.input_size, cpu)[0]
    table: dict[str, Callable[[], object]] = {
        f"detector {DETECTOR} forward at {pipeline.detector.input_size}": partial(
            pipeline.detector.model, squares
        )
    }
    for count in POSE_CROPS:
        crops = pipeline.crops(image, person_boxes(1280, 720, count)[0])[0]
        table[f"pose network, {count} crop(s)"] = partial(pipeline.heatmaps, crops)
    for (width, height), persons in REQUESTS:
        payload = request_image(synthetic_photo(width, height, seed=persons))
        boxes, scores = person_boxes(width, height, persons, seed=persons)
        table[f"request {width}x{height}, {persons} person(s)"] = partial(
            answer, pipeline, payload, boxes, scores
        )
    return table


def worker(weights: Path, engine: str, precision: str, calibration: Path | None = None) -> None:
    """One engine's pipeline in its own process, as a function worker holds it: reads a work label per
    line on stdin, runs it once, answers its time in ms on stdout."""
    configure_cpu_threads()
    pipeline = PosePipeline.from_weights_dir(
        weights,
        preset=PRESET,
        detector=DETECTOR,
        device="cpu",
        engine=engine,
        precision=precision,
        calibration=calibration,
    )
    table = works(pipeline)
    if engine in ENGINES:
        with tempfile.TemporaryDirectory(prefix="alphapose-bench-dense-") as directory:
            table[DENSE_LABEL] = checked(dense_product(engine, Path(directory), precision), precision)
    print(json.dumps({network: str(e) for network, e in pipeline.engines.items()}), flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            start = time.perf_counter()
            table[line.strip()]()
            print(round((time.perf_counter() - start) * 1000, 3), flush=True)


class Worker:
    """The parent's handle on a :func:`worker` process."""

    def __init__(self, weights: Path, engine: str, precision: str, environ: dict[str, str]) -> None:
        calibration = ["--calibration", str(weights / CALIBRATION)] if precision == INT8 else []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.engines",
                *("--worker", str(weights), "--engine", engine, "--precision", precision),
                *calibration,
            ],
            cwd=REPOSITORY,
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.engines = json.loads(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark worker stopped (exit status {self.process.wait()})")
        return line

    def time(self, label: str) -> float:
        assert self.process.stdin is not None
        time.sleep(SETTLE_SECONDS)
        self.process.stdin.write(label + "\n")
        self.process.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def side_by_side(
    weights: Path,
    precision: str,
    repeats: int,
    warmup: int,
    environ: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Each network and each request in every engine of :func:`columns`, one worker process per engine
    (a function worker holds one engine; idle runtimes' threads in one process would slow the others),
    timed in turns."""
    workers: dict[str, Worker] = {}
    try:
        lineup = columns(precision)
        for label, (name, worker_precision) in lineup.items():
            log(f"starting the {label} worker (exports on first use)")
            workers[label] = Worker(weights, name, worker_precision, environ)

        def timed(label: str, chosen: dict[str, Worker], runs: int) -> dict[str, Any]:
            log(label)
            for handle in chosen.values():
                for _ in range(warmup):
                    handle.time(label)
            times: dict[str, list[float]] = {n: [] for n in chosen}
            for _ in range(runs):
                for name, handle in chosen.items():
                    times[name].append(handle.time(label))
            medians = {n: statistics.median(t) for n, t in times.items()}
            return {
                "work": label,
                "ms": {n: round(m, 1) for n, m in medians.items()},
                "spread_ms": {n: [round(min(t), 1), round(max(t), 1)] for n, t in times.items()},
                "vs_torch": {n: round(m / medians["torch"], 3) for n, m in medians.items()},
            }

        labels = network_labels()
        networks = [timed(label, workers, repeats) for label in labels]
        dense = timed(DENSE_LABEL, workers, repeats)
        candidates = [label for label, (_, p) in lineup.items() if p == precision]
        best_detector = min(candidates, key=networks[0]["ms"].get)
        best_pose = min(candidates, key=networks[-1]["ms"].get)
        if best_detector != best_pose:
            mix = f"detector={lineup[best_detector][0]},pose={lineup[best_pose][0]}"
            label = mix if precision == "fp32" else f"{mix} {precision}"
            log(f"starting the {label} worker")
            workers[label] = Worker(weights, mix, precision, environ)
        requests = [timed(label, workers, repeats) for label in request_labels()]
        return {
            "engines": {n: w.engines for n, w in workers.items()},
            "networks": networks,
            "dense": dense,
            "requests": requests,
        }
    finally:
        for handle in workers.values():
            handle.close()


def network_labels() -> list[str]:
    return [
        f"detector {DETECTOR} forward at 640",
        *(f"pose network, {count} crop(s)" for count in POSE_CROPS),
    ]


def request_labels() -> list[str]:
    return [f"request {w}x{h}, {persons} person(s)" for (w, h), persons in REQUESTS]


def cold_starts(weights: Path, log: Callable[[str], None], int8: bool) -> dict[str, Any]:
    """A fresh worker per engine: without a cached export (it exports) and with one; for int8 (when
    ``int8``), without a cached quantized model (it exports and quantizes) and with one."""
    rows: dict[str, Any] = {}
    starts = [(name, "fp32") for name in available_engines()] + ([("openvino", INT8)] if int8 else [])
    for name, precision in starts:
        what = "quantized model" if precision == INT8 else "export"
        runs = (
            {"": None} if name == "torch" else {f"without cached {what}": True, f"with cached {what}": False}
        )
        column = name if precision == "fp32" else f"{name} {precision}"
        for label, clear in runs.items():
            if clear:
                shutil.rmtree(weights / CACHE_DIRECTORY, ignore_errors=True)
            log(f"cold start, {column} {label}".rstrip())
            settings = (
                {"precision": precision, "calibration": weights / CALIBRATION} if precision == INT8 else {}
            )
            report = measure_cold_start(
                weights, PRESET, "cpu", None, detector=DETECTOR, engine=name, **settings
            )
            rows[f"{column} {label}".strip()] = {
                "init_context_done_s": report["seconds_from_process_start"]["init_context_done"],
                "first_answer_s": report["seconds_from_process_start"]["first_answer"],
                "peak_rss_mb": report["peak_rss_mb"]["after_20_persons"],
                "engines": report["engines"],
            }
    return rows


def measure(
    weights: Path,
    flops: dict[str, int],
    quick: bool,
    environ: dict[str, str],
    log: Callable[[str], None],
    precision: str = "fp32",
) -> dict[str, Any]:
    """One measurement side by side, each row with its arithmetic rate from ``flops``
    (:func:`network_flops`, the same for every measurement)."""
    started = load_average()
    figures = side_by_side(weights, precision, 3 if quick else 7, 1, environ, log)
    for row in (*figures["networks"], figures["dense"]):
        row["gflop"] = round(flops[row["work"]] / 1e9, 2)
        row["gflop_per_s"] = {n: round(flops[row["work"]] / ms / 1e6, 1) for n, ms in row["ms"].items()}
    return {
        "precision": precision,
        "caps": {k: environ[k] for k in (*AVX2_CAPS, "OMP_NUM_THREADS") if k in environ},
        "load_average_start": started,
        "load_average_end": load_average(),
        **figures,
    }


def run(
    quick: bool, log: Callable[[str], None], cold: bool = True, only: tuple[str, ...] = KEYS
) -> dict[str, Any]:
    """The measurements (native, under the AVX2 caps, one thread, bf16 where the CPU has the units, int8
    natively and under the caps; ``only`` those named) and the cold starts."""
    from tools.synthetic_weights import write_synthetic_weights

    env = environment(torch.device("cpu"))
    flags = cpu_flags()
    with tempfile.TemporaryDirectory(prefix="alphapose-bench-engines-") as directory:
        weights = write_synthetic_weights(directory, (PRESET,), persons=True, detectors=(DETECTOR,))
        flops = network_flops(weights)
        skipped = {REDUCED: bf16_skip_reason(), INT8: int8_skip_reason()}
        if not skipped[INT8]:
            write_calibration(weights / CALIBRATION)
        figures: dict[str, Any] = {}
        for measurement in run_order():
            if skipped.get(measurement.precision):
                figures[measurement.key] = {"skipped": skipped[measurement.precision]}
            elif measurement.key in only:
                log(f"measuring: {measurement.title}")
                environ = {**os.environ, **measurement.environ}
                figures[measurement.key] = measure(weights, flops, quick, environ, log, measurement.precision)
        cold = cold_starts(weights, log, int8=not skipped[INT8]) if cold else None
    return {
        "schema": 1,
        "name": f"engines-cpu-{slug(cpu_model())}-{env['torch_threads']}threads"
        + ("-quick" if quick else ""),
        "quick": quick,
        "preset": PRESET,
        "detector": DETECTOR,
        "environment": env,
        "cpu_features": [f for f in FEATURES if f in flags],
        "versions": {name: _version(name) for name in available_engines()},
        "capped_by": CAPPED_BY,
        "dense_not_capped": list(DENSE_NOT_CAPPED),
        **figures,
        "cold_start": cold,
    }


def bf16_skip_reason() -> str | None:
    """Why this run does not measure bf16 (the CPU has no units for it), or None."""
    if missing_cpu_units(resolve_precision(REDUCED, "cpu")) is None:
        return None
    return f"not measured: this CPU has none of {', '.join(CPU_UNIT_FLAGS[REDUCED])}"


def int8_skip_reason() -> str | None:
    """Why this run does not measure int8 (its runtime or its quantizer missing), or None."""
    for package in ("openvino", "nncf"):
        if find_spec(package) is None:
            return f"not measured: the {package} package is not installed (requirements-int8.txt)"
    return None


def _version(engine: str) -> str:
    if engine == "torch":
        return torch.__version__
    return ENGINES[engine].driver().version()


def main(argv: list[str] | None = None) -> None:
    parser = CommandLineParser(prog="python -m bench.engines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the fresh-worker measurements")
    parser.add_argument(
        "--only",
        default=",".join(KEYS),
        help=f"the measurements to make, comma-separated (default: all of {', '.join(KEYS)})",
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one engine's process, these weights
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--calibration", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results directory (default: bench/results)"
    )
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[bench.engines] {message}", file=sys.stderr, flush=True)

    if args.worker:
        worker(args.worker, args.engine, args.precision, args.calibration)
        return
    from bench.report import render_engines

    only = tuple(name.strip() for name in args.only.split(","))
    unknown = sorted(set(only) - set(KEYS))
    if unknown:
        parser.error(f"--only: unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(KEYS)}")
    results = run(args.quick, log, cold=not args.no_cold_start, only=only)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{results['name']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    text = "\n".join(render_engines(results))
    path.with_suffix(".md").write_text(text + "\n")
    print(text)
    log(f"wrote {path}")


if __name__ == "__main__":
    run_command(main, "bench.engines")
