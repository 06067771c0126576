"""Record xtcocotools' part-by-part COCO-WholeBody figures on the set of wholebody_eval_set.py.

    python tests/golden/gen_xtcocotools.py --python /path/to/venv/bin/python

xtcocotools 1.14.3 loads only with numpy 1.x, so it runs in a separate interpreter (``--python``, e.g.
a venv with ``pip install numpy==1.26.4 xtcocotools==1.14.3``); this half, in the project's venv, writes
the set and the sigmas (alphapose.evaluation's table, checked against AlphaPose's own in
test_evaluate.py) and stores what the other half prints in data/xtcocotools_wholebody.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from alphapose.evaluation import WHOLEBODY133_SIGMAS  # noqa: E402
from tests.golden.wholebody_eval_set import FIELDS, make_set  # noqa: E402

OUT = HERE / "data" / "xtcocotools_wholebody.json"

# The official half: each part as mmpose's COCO-WholeBody evaluation calls xtcocotools (use_area=True).
CHILD = """
import contextlib, io, json, sys
from importlib.metadata import version
import numpy as np
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

work = json.load(open(sys.argv[1]))
sigmas = np.array(work["sigmas"])
cuts = np.cumsum([0, 17, 6, 68, 21, 21])
parts = [("body", "keypoints_body"), ("foot", "keypoints_foot"), ("face", "keypoints_face"),
         ("lefthand", "keypoints_lefthand"), ("righthand", "keypoints_righthand")]
stats = {}
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[2])
    dt = gt.loadRes(sys.argv[3])
    for i, (name, iou_type) in enumerate(parts):
        run = COCOeval(gt, dt, iou_type, sigmas[cuts[i]:cuts[i + 1]], use_area=True)
        run.params.useSegm = None
        run.evaluate(); run.accumulate(); run.summarize()
        stats[name] = [float(v) for v in run.stats]
    run = COCOeval(gt, dt, "keypoints_wholebody", sigmas, use_area=True)
    run.params.useSegm = None
    run.evaluate(); run.accumulate(); run.summarize()
    stats["wholebody"] = [float(v) for v in run.stats]
print(json.dumps({"xtcocotools": version("xtcocotools"), "numpy": np.__version__, "stats": stats}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", required=True, help="an interpreter with xtcocotools and numpy 1.x")
    args = parser.parse_args()
    dataset, poses = make_set()
    with tempfile.TemporaryDirectory() as directory:
        work, gt, dt = (Path(directory) / name for name in ("work.json", "gt.json", "dt.json"))
        work.write_text(json.dumps({"sigmas": list(WHOLEBODY133_SIGMAS)}))
        gt.write_text(json.dumps(dataset))
        dt.write_text(json.dumps(poses))
        child = subprocess.run(
            [args.python, "-c", CHILD, str(work), str(gt), str(dt)],
            check=True,
            capture_output=True,
            text=True,
        )
    recorded = json.loads(child.stdout.strip().splitlines()[-1])
    recorded["set"] = {
        "persons": len(dataset["annotations"]),
        "poses": len(poses),
        "fields": [f for f, _ in FIELDS],
    }
    OUT.write_text(json.dumps(recorded, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
