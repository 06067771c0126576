"""Pose stage cost and answer size per preset: ``python -m bench.answers [--preset NAME ...] [--quick]``.

The whole-body presets differ from the 17/26-keypoint ones in what follows the person detector: a larger
output head (133 or 136 maps), their decoding (integral regression is a sigmoid and two marginal sums per
map), the whole-body pose NMS, and answers five to eight times longer. The detector is the same for every
preset, so it is left out here; ``python -m bench --preset NAME`` measures a whole request.

Each preset's network is loaded as the function loads it (official-format synthetic weights, batch norms
folded, channels-last) and runs the pose stage (crops, forward, decoding, pose NMS) on five person boxes
of a 1280x720 photo-like image. Reported: the pose stage per person, the forward alone per person, and
the size of the CVAT answer for those five persons (the function's default keypoint thresholds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch

from alphapose.cvat.formats import cvat_skeletons
from alphapose.engines.threads import configure_cpu_threads
from alphapose.pipeline import PosePipeline
from alphapose.pose.presets import PRESETS, get_preset
from alphapose.pose.transforms import decode_outputs
from alphapose.structures import Pose
from bench.measure import device_label, measure
from bench.presets import load_network
from bench.workloads import person_boxes, synthetic_photo

PERSONS = 5
IMAGE_SIZE = (1280, 720)
DEFAULT_PRESETS = (
    "fastpose_res50_coco",
    "fastpose_res50_halpe26",
    *(name for name, preset in PRESETS.items() if preset.skeleton.num_keypoints > 26),
)


def measure_preset(name: str, device: torch.device, repeats: int, directory: Path) -> dict[str, Any]:
    """One preset's row (see the module docstring)."""
    preset = get_preset(name)
    model = load_network(name, directory, device)
    pipeline = PosePipeline(None, model, preset, device)  # type: ignore[arg-type]  # no detector needed
    image = synthetic_photo(*IMAGE_SIZE, seed=1)
    boxes, scores = person_boxes(*IMAGE_SIZE, PERSONS, seed=PERSONS)
    batch, crop_boxes = pipeline.crops(image, boxes)
    stage = measure(partial(pipeline.estimate, image, boxes, scores), repeats, 1, device)
    forward = measure(partial(pipeline.heatmaps, batch), repeats, 1, device)
    # The answer for exactly five persons: the decoded poses before pose NMS, which may merge boxes.
    keypoints, keypoint_scores = decode_outputs(
        pipeline.heatmaps(batch), crop_boxes, preset.regression_joints
    )
    poses = [
        Pose(box, float(score), k, s, 0.0)
        for box, score, k, s in zip(boxes, scores, keypoints, keypoint_scores, strict=True)
    ]
    answer = cvat_skeletons(
        poses, preset.skeleton, threshold=0.0, keypoint_threshold=preset.keypoint_thresholds
    )
    return {
        "preset": name,
        "keypoints": preset.skeleton.num_keypoints,
        "pose_stage_ms_per_person": round(stage.median_ms / PERSONS, 1),
        "pose_forward_ms_per_person": round(forward.median_ms / PERSONS, 1),
        "answer_bytes_5_persons": len(json.dumps(answer).encode()),
        "persons_in_answer": len(answer),
    }


def render(rows: list[dict[str, Any]], device_name: str) -> str:
    lines = [
        f"Pose stage per preset on {device_name}, {PERSONS} persons in a "
        f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} image",
        "",
        "| preset | keypoints | pose stage ms/person | forward ms/person | answer bytes (5 persons) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['preset']}` | {r['keypoints']} | {r['pose_stage_ms_per_person']} | "
        f"{r['pose_forward_ms_per_person']} | {r['answer_bytes_5_persons']} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.answers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), help="repeatable")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="3 timed runs instead of 7")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    configure_cpu_threads()
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="alphapose-bench-") as directory:
        for name in args.preset or DEFAULT_PRESETS:
            print(f"[bench.answers] {name}", file=sys.stderr, flush=True)
            rows.append(measure_preset(name, device, 3 if args.quick else 7, Path(directory)))
    print(render(rows, device_label(device)))
    if args.out:
        args.out.write_text(json.dumps({"device": device_label(device), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
