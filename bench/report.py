"""The benchmark's JSON rendered as the README's markdown tables."""

from __future__ import annotations

import argparse
import json
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.stages import STAGES

_STAGE_HEADERS = {
    "image_decode": "decode",
    "letterbox": "letterbox",
    "detector_forward": "det. fwd",
    "detector_postprocess": "det. post",
    "crops": "crops",
    "pose_forward": "pose fwd",
    "heatmap_decode": "hm decode",
    "pose_nms": "pose NMS",
    "format_cvat": "format",
}


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines[1] = "|:---" + lines[1][5:]  # first column left-aligned
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(results: dict[str, Any]) -> str:
    """Markdown for one results JSON: setup line, latency by stage, summary figures, throughput by batch
    size, and the before/after of each optimisation when the run measured them."""
    env = results["environment"]
    plan = results["plan"]
    precision = "fp16 autocast" if env["device"].startswith("cuda") else "fp32"
    threads = f", {env['torch_threads']} threads" if env["device"] == "cpu" else ""
    lines = [
        f"### {results['name']}",
        "",
        f"{env['device_name']} ({env['device']}{threads}), torch {env['torch']}, preset "
        f"`{results['preset']}`, detector input {results['latency']['detector_input']}, {precision}. "
        f"Medians of {plan['repeats']} runs after {plan['warmup']} warm-up "
        f"({plan['end_to_end_repeats']} for end to end); {results['weights']} weights. Times in ms.",
        "",
    ]
    busy = max(env["load_average"][0], env.get("load_average_end", [0])[0])
    if env["device"] == "cpu" and busy > env["torch_threads"] + 0.5:
        lines += [
            f"> Other processes were busy during this run (load average up to {busy:.1f} on "
            f"{env['cpus_available']} CPUs): the figures are slower and noisier than on an idle machine.",
            "",
        ]
    header = ["image", "persons", *(_STAGE_HEADERS[s] for s in STAGES), "sum", "end to end"]
    rows = [
        [
            row["image"],
            str(row["persons"]),
            *(_ms(row["stages_ms"][s]) for s in STAGES),
            _ms(row["composed_ms"]),
            f"**{_ms(row['end_to_end_ms'])}**",
        ]
        for row in results["latency"]["rows"]
    ]
    lines += _table(header, rows)
    lines += [
        "",
        "End to end = one request with the person count fixed (decode, detector, pose stage on the given "
        "boxes, CVAT JSON); sum = the stages added up. The detector forward does not depend on the image "
        "size (it sees the letterbox) and the pose forward only on the person count.",
        "",
    ]
    lines += _summary(results)
    throughput = results.get("pose_throughput")
    if throughput:
        lines += ["", "Pose network throughput (crops in, heatmaps out):", ""]
        lines += _table(
            ["batch", "ms per batch", "persons/s"],
            [[str(r["batch"]), _ms(r["ms_per_batch"]), f"{r['persons_per_s']:.1f}"] for r in throughput],
        )
    if results.get("ablation"):
        lines += ["", "Optimisations, each off and on in the same run:", ""]
        lines += _ablation(results["ablation"])
    return "\n".join(lines) + "\n"


def _summary(results: dict[str, Any]) -> list[str]:
    eff = results["efficiency"]
    loop = results["loop_vs_batch"]
    matmul = eff["matmul"]
    rows = [[f"{matmul['dtype']} matmul {matmul['size']}² (the ceiling)", f"{matmul['gflops']:,.0f} GFLOP/s"]]
    rows += [
        [
            f"pose network, batch {eff['pose_batch']} ({eff['pose_gflop_per_person']} GFLOP/person)",
            f"{eff['pose_gflops']:,.0f} GFLOP/s = {eff['pose_fraction']:.0%} of matmul",
        ],
        [
            f"detector ({eff['detector_gflop']} GFLOP)",
            f"{eff['detector_gflops']:,.0f} GFLOP/s = {eff['detector_fraction']:.0%} of matmul",
        ],
        [
            f"pose stage, {loop['persons']} persons: per-person loop / batched",
            f"{_ms(loop['loop']['median_ms'])} / {_ms(loop['batched']['median_ms'])} ms = "
            f"**{loop['speedup']:.2f}x**",
        ],
    ]
    worst = max(results["latency"]["rows"], key=lambda r: r["overhead_vs_networks"])
    rows.append(
        [
            "end to end over the two network forwards alone (worst row)",
            f"{worst['overhead_vs_networks']:+.1%} ({worst['image']}, {worst['persons']} "
            f"{'person' if worst['persons'] == 1 else 'persons'})",
        ]
    )
    cold = results.get("cold_start")
    if cold:
        start = cold["seconds_from_process_start"]
        after_init = cold["memory_after_init_mb"]
        peak = cold["peak_rss_mb"]
        moments = (start["main_imported"], start["init_context_done"], start["first_answer"])
        rows += [
            [
                "cold start from process start: `import main` / `init_context` done / first answer",
                " / ".join(f"{t:.2f}" for t in moments) + " s",
            ],
            [
                "worker memory after init: RSS (private part)",
                f"{after_init['rss']:,.0f} ({after_init['anonymous']:,.0f}) MiB",
            ],
            [
                "worker peak RSS: after init / after a 20-person batch",
                f"{peak['after_init']:,.0f} / {peak['after_20_persons']:,.0f} MiB",
            ],
        ]
        if "cuda_peak_allocated_mb" in cold:
            rows.append(
                [
                    "worker peak GPU memory allocated / reserved",
                    f"{cold['cuda_peak_allocated_mb']:,.0f} / {cold['cuda_peak_reserved_mb']:,.0f} MiB",
                ]
            )
    return _table(["figure", "value"], rows)


def _ablation(ablation: dict[str, Any]) -> list[str]:
    rows = []
    for name, variants in ablation.items():
        if name == "load_pose_model":
            before, after = variants["build_then_copy"]["ms"], variants["meta_assign"]["ms"]
            rows.append(
                [name, "build + copy → meta + assign", _ms(before), _ms(after), f"{before / after:.2f}x", ""]
            )
            continue
        keys = [k for k in variants if isinstance(variants[k], dict)]
        for before, after in pairwise(keys):
            b, a = variants[before], variants[after]
            rows.append(
                [
                    name,
                    f"{before} → {after}",
                    _ms(b["median_ms"]),
                    _ms(a["median_ms"]),
                    f"{b['median_ms'] / a['median_ms']:.2f}x",
                    f"{a['max_relative_difference']:.1e}",
                ]
            )
    return _table(["work", "change", "before ms", "after ms", "speedup", "max rel. diff"], rows)


def write_report(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """``<name>.json`` and ``<name>.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{results['name']}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path = directory / f"{results['name']}.md"
    md_path.write_text(render_markdown(results))
    return json_path, md_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description="Print the markdown tables of benchmark results files."
    )
    parser.add_argument("results", type=Path, nargs="+", help="bench/results/<name>.json files")
    args = parser.parse_args(argv)
    print("\n".join(render_markdown(json.loads(path.read_text())) for path in args.results), end="")


if __name__ == "__main__":
    main()
