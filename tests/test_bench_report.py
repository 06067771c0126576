"""docs/performance.md's figures are generated from the committed benchmark results, and stay so."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bench.report import (
    README_BEGIN,
    README_END,
    committed_engine_runs,
    committed_runs,
    readme_section,
    render_engines,
    render_markdown,
    update_readme,
)

PERFORMANCE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def test_readme_block_is_the_committed_results() -> None:
    runs = committed_runs()
    assert runs, "no full benchmark run committed under bench/results"
    text = PERFORMANCE.read_text()
    block = text[text.index(README_BEGIN) : text.index(README_END) + len(README_END)]
    assert block == readme_section(runs, committed_engine_runs()), (
        "docs/performance.md is stale: run python -m bench.report --readme docs/performance.md"
    )


def test_rows_break_out_decode_networks_and_the_rest() -> None:
    path, results = committed_runs()[0]
    results = copy.deepcopy(results)
    row = results["latency"]["rows"][0]
    row["stages_ms"] = {name: 1.0 for name in row["stages_ms"]} | {
        "image_decode": 2.5,
        "detector_forward": 700.0,
        "pose_forward": 80.25,
    }
    row["end_to_end_ms"] = 1234.5
    section = readme_section([(path, results)])
    other = len(row["stages_ms"]) - 3  # the six other stages at 1 ms each
    assert (
        f"| {row['image']} | {row['persons']} | 2.50 | 700.0 | 80.2 | {other:.2f} | **1,234.5** |" in section
    )
    assert f"({Path(path).with_suffix('.md').as_posix()})" in section


def test_update_replaces_only_the_block(tmp_path: Path) -> None:
    runs = committed_runs()
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{README_BEGIN}\nold figures\n{README_END}\n\nafter\n")
    assert update_readme(readme, runs)
    assert readme.read_text() == f"# Title\n\nbefore\n\n{readme_section(runs)}\n\nafter\n"
    assert not update_readme(readme, runs)


def test_update_refuses_a_readme_without_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    with pytest.raises(SystemExit, match="no generated block"):
        update_readme(readme, committed_runs())


def test_report_has_a_row_per_preset_when_the_run_measured_them() -> None:
    results = copy.deepcopy(committed_runs()[0][1])
    results["presets"] = [
        {"preset": "hrnet_w32_coco", "batch": 8, "gflop_per_person": 7.123, "ms_per_person": 45.678,
         "persons_per_s": 21.89, "uncounted": None},
        {"preset": "fastpose_dcn_res50_coco", "batch": 8, "gflop_per_person": 5.9, "ms_per_person": 70.0,
         "persons_per_s": 14.29, "uncounted": "deformable convolutions"},
    ]  # fmt: skip
    report = render_markdown(results)
    assert "Pose network of every preset (batch 8" in report
    assert "| `hrnet_w32_coco` | 7.12 | 45.7 | 21.9 |" in report
    assert "| `fastpose_dcn_res50_coco` | 5.90 (without DCN) | 70.0 | 14.3 |" in report
    del results["presets"]  # results written before the table existed still render
    assert "every preset" not in render_markdown(results)


def _timing(ms: float) -> dict[str, float | int]:
    return {"median_ms": ms, "min_ms": ms, "max_ms": ms, "runs": 5}


def _with_bf16(results: dict) -> dict:
    """A committed run with a bf16 part as ``python -m bench`` writes it on a CPU with the units."""
    results = copy.deepcopy(results)
    latency = copy.deepcopy(results["latency"])
    for row in latency["rows"]:
        row["end_to_end_ms"] = row["end_to_end_ms"] / 2
    results["precision"] = {
        "main": "fp32",
        "other": "bf16 weights",
        "cpu_units": ["avx512_bf16"],
        "forwards": [
            {
                "network": "detector 608",
                "timings": {
                    "fp32": _timing(400.0),
                    "bf16 weights": _timing(180.0),
                    "bf16 autocast": _timing(190.0),
                },
                "ratio_to_fp32": {"fp32": 1.0, "bf16 weights": 0.45, "bf16 autocast": 0.475},
            }
        ],
        "agreement": {
            "persons_kept": {"fp32": 81, "bf16": 80, "matched": 80},
            "box_px": {"median": 0.0, "max": 0.5, "count": 3},
            "keypoint_px": {"median": 55.8, "max": 741.7, "count": 1377},
            "keypoint_px_input_rounding_only": {"median": 0.0, "max": 526.6, "count": 1326},
            "heatmap_relative_difference": 0.6482,
        },
        "latency": latency,
    }
    return results


def test_both_precisions_side_by_side_in_the_readme_block() -> None:
    path, results = committed_runs()[0]
    results = _with_bf16(results)
    section = readme_section([(path, results)])
    assert "**bf16 weights next to fp32**" in section
    assert "| network | fp32 | bf16 weights | bf16 autocast |" in section
    assert "| detector 608 | 400.0 | 180.0 (0.45x) | 190.0 (0.47x) |" in section
    row = results["latency"]["rows"][0]
    fp32_ms = row["end_to_end_ms"]
    expected = f"| {row['image']} | {row['persons']} | {fp32_ms:,.1f} | {fp32_ms / 2:,.1f} | 0.50x |"
    assert expected in section
    assert "persons kept 80 / 81 (80 matched)" in section
    assert "boxes moved by a median of 0.0 px (max 0.5)" in section
    assert "keypoints by a median of 55.8 px (max 741.7)" in section
    assert "merely rounded to bf16 moves them by 0.0 px (max 526.6)" in section
    assert "heatmaps differ by 0.65 of their spread" in section
    assert "bf16 weights next to fp32" in render_markdown(results)


def test_a_cpu_without_the_units_says_why_bf16_is_missing() -> None:
    path, results = committed_runs()[0]
    results = copy.deepcopy(results)
    reason = "not measured: this CPU has none of amx_bf16, avx512_bf16"
    results["precision"] = {"main": "fp32", "other": "bf16 weights", "cpu_units": [], "skipped": reason}
    section = readme_section([(path, results)])
    assert f"bf16 weights: {reason}." in section
    assert "next to" not in section


def test_runs_without_a_precision_part_render_as_before() -> None:
    path, results = committed_runs()[0]
    results = copy.deepcopy(results)
    results.pop("precision", None)
    assert "next to" not in readme_section([(path, results)])


def test_full_report_has_a_row_per_measured_detector() -> None:
    from bench.report import render_markdown

    _, results = committed_runs()[0]
    results = copy.deepcopy(results)
    results["detectors"] = [
        {
            "detector": name,
            "input": size,
            "gflop": gflop,
            "forward_ms": forward,
            "detector_ms": forward + 10,
            "gflop_per_s": gflop / forward * 1000,
            "end_to_end_ms": {"640x480/1": forward + 100, "1920x1080/20": forward + 1500},
        }
        for name, size, gflop, forward in (("yolov3-spp", 608, 141.45, 700.0), ("yolox-s", 640, 26.69, 130.0))
    ]
    report = render_markdown(results)
    assert "| end to end 640x480, 1 p. | end to end 1920x1080, 20 p. |" in report
    assert "| yolox-s | 640 | 26.7 | 140.0 | 130.0 | 205 | 230.0 | 1,630.0 |" in report


def _block(lines: list[str], title: str) -> list[str]:
    """The lines of one measurement of the engines report: from its title to the next title."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"*{title}*"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("*")), len(lines))
    return lines[start:end]


def test_engine_rates_bound_each_network_by_the_best_dense_rate_where_it_ran_under_the_same_caps() -> None:
    results = copy.deepcopy(committed_engine_runs()[0])
    native = results["native"]
    native["dense"]["gflop_per_s"] = {"torch": 100.0, "onnxruntime": 200.0, "openvino": 50.0}
    detector = native["networks"][0]
    detector.update(gflop=20.0, ms={**detector["ms"], "torch": 200.0})
    lines = render_engines(results)
    native_block = _block(lines, "native instruction set")
    assert any(line.endswith("| ms at 200 GFLOP/s |") for line in native_block)
    row = next(line for line in native_block if line.startswith(f"| {detector['work']} | 20.0 |"))
    assert row.endswith("| 100.0 (0.50x) |")
    capped_block = _block(lines, "under the AVX2 caps")
    assert not any("ms at" in line for line in capped_block)
    dense = results["avx2_caps"]["dense"]["work"]
    assert any(line.startswith(f"| {dense} (onnxruntime, openvino: not capped) |") for line in capped_block)


def test_a_cpu_without_bf16_units_says_why_the_engines_bf16_measurement_is_missing() -> None:
    results = copy.deepcopy(committed_engine_runs()[0])
    reason = "not measured: this CPU has none of amx_bf16, avx512_bf16"
    results["bf16"] = {"skipped": reason}
    lines = render_engines(results)
    assert f"*bf16 beside torch in fp32, native instruction set*: {reason}." in lines
