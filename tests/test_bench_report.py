"""The README's performance figures are generated from the committed benchmark results, and stay so."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bench.report import README_BEGIN, README_END, committed_runs, readme_section, update_readme

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_block_is_the_committed_results() -> None:
    runs = committed_runs()
    assert runs, "no full benchmark run committed under bench/results"
    text = README.read_text()
    block = text[text.index(README_BEGIN) : text.index(README_END) + len(README_END)]
    assert block == readme_section(runs), "README is stale: run python -m bench.report --readme README.md"


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
