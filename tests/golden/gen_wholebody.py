"""Golden fixtures for the whole-body presets, recorded from the official AlphaPose code.

For each of the three presets the whole-body issue names, seeded random weights are written in the
official checkpoint format by this project's synthetic weights writer (:data:`SEED`), and the official
code (``_official_wholebody.py``, run in a child process because both packages are called ``alphapose``)
runs its pose stage on :data:`BOXES` of a real photo, without and with the flip test: crops, network,
flip averaging, decoding by loss type and the whole-body pose NMS. Fixed boxes instead of a detector
keep the fixture about the pose stage; two pairs of them overlap so that pose NMS merges.

Run through ``tests/golden/make_golden.py --official DIR --out tests/golden/data --only wholebody``, or
directly: ``python -m tests.golden.gen_wholebody --official DIR --out tests/golden/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SEED = 13
"""Seed of the synthetic weights; the tests rebuild the same files from it."""
IMAGE = Path(__file__).resolve().parent.parent / "data" / "astronaut.jpg"
"""The suite's public-domain photo of a person (tests/data/README.md), 512x512."""
# x1, y1, x2, y2 in pixels: the person and a near-duplicate box, her head and a near-duplicate box (pose
# NMS merges each pair), the model shuttle, and a box running off the image's left edge (the crop's zero
# border).
BOXES = (
    (20.0, 10.0, 370.0, 512.0),
    (26.5, 4.0, 378.0, 506.5),
    (140.0, 10.0, 310.0, 200.0),
    (146.0, 15.5, 317.0, 207.0),
    (350.0, 0.0, 470.0, 280.0),
    (-40.0, 150.0, 90.0, 512.0),
)
PRESETS = ("fastpose_res50_wholebody136", "fastpose_dcn_res50_wholebody136", "fastpose_res50_halpe136")
"""Each run with the official config its preset row names."""
OUTPUT_JOINTS = (0, 17, 25, 26, 60, 93, 94, 114, 115, 135)
"""Network output maps kept in the fixture (of the first box): body, feet, face, both hands."""


KEYS_FILE = "wholebody_state_dict_keys.json"
"""Per official config of a whole-body preset: key count and digest of its network's state_dict."""


def fixture_path(out: Path, preset: str) -> Path:
    return out / f"wholebody_{preset}.npz"


def write_seeded_checkpoint(preset: str, directory: Path) -> Path:
    """The preset's checkpoint with the fixture's seeded weights (:data:`SEED`), in the official format:
    ``seeded.write_pose_checkpoint``'s, whose deformable offsets are scaled so that the network is not
    chaotic (tests/golden/conditioning.py)."""
    from tests.golden import seeded

    return seeded.write_pose_checkpoint(preset, directory, seed=SEED)


def generate(official: Path, out: Path) -> list[Path]:
    from alphapose.pose.presets import PRESETS as PRESETS_TABLE
    from alphapose.pose.presets import get_preset

    out = out.resolve()  # the official runs work in a temporary directory
    out.mkdir(parents=True, exist_ok=True)
    written = []
    runner = Path(__file__).resolve().parent / "_official_wholebody.py"
    with tempfile.TemporaryDirectory() as tmp:
        for preset in PRESETS:
            config = official / get_preset(preset).official_config
            checkpoint = write_seeded_checkpoint(preset, Path(tmp))
            raw = Path(tmp) / f"{preset}.npz"
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            subprocess.run(
                [
                    sys.executable, str(runner), "--official", str(official), "--config", str(config),
                    "--checkpoint", str(checkpoint), "--image", str(IMAGE), "--boxes", json.dumps(BOXES),
                    "--out", str(raw),
                ],
                check=True, cwd=tmp, env=env,
            )  # fmt: skip
            written.append(_reduce(raw, fixture_path(out, preset), get_preset(preset).regression_joints))
        configs = sorted({p.official_config for p in PRESETS_TABLE.values() if p.official_config})
        subprocess.run(
            [sys.executable, str(runner), "--keys", str(official), str(out / KEYS_FILE), *configs],
            check=True, cwd=tmp, env=env,
        )  # fmt: skip
        written.append(out / KEYS_FILE)
    return written


def _reduce(raw: Path, path: Path, regression_joints: int) -> Path:
    """Everything the runner recorded but the full network outputs, of which a few maps are kept; and
    what the tests derive their tolerances from: the condition of the draw (float32 against float64
    outputs, refused above the limit) and, for the heatmap joints, the decoding margins."""
    from alphapose.pose.transforms import decode_outputs
    from tests.golden.conditioning import accept, condition
    from tests.golden.gen_pose_stage import decoding_margins

    data = dict(np.load(raw))
    for tag in ("plain", "flip"):
        outputs, outputs64 = data[f"{tag}_outputs"], data.pop(f"{tag}_outputs64")
        data[f"{tag}_condition"] = np.array(accept(condition(outputs, outputs64), f"{path.name} {tag}"))
        if regression_joints:  # how far that rounding moves the decoded regression joints, in pixels
            ours = [decode_outputs(o, data["crop_boxes"], regression_joints)[0] for o in (outputs, outputs64)]
            moved = np.abs(ours[0] - ours[1])[:, -regression_joints:].max()
            data[f"{tag}_regression_keypoint_condition"] = np.array(moved, np.float64)
        heatmap_joints = outputs.shape[1] - regression_joints
        gaps = np.full(outputs.shape[:2], np.inf, np.float32), np.full(outputs.shape[:2], np.inf, np.float32)
        if heatmap_joints:  # regression joints decide nothing: no margin
            for gap, margin in zip(gaps, decoding_margins(outputs[:, :heatmap_joints]), strict=True):
                gap[:, :heatmap_joints] = margin
        data[f"{tag}_peak_gap"], data[f"{tag}_offset_gap"] = gaps
        data[f"{tag}_outputs"] = outputs[0, list(OUTPUT_JOINTS)].astype(np.float32)
    data["boxes"] = np.array(BOXES, dtype=np.float32)
    np.savez_compressed(path, **data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for path in generate(args.official, args.out):
        print(path)


if __name__ == "__main__":
    main()
