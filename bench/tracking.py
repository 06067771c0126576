"""Identities kept by the pose tracker against ByteTrack and OC-SORT: ``python -m bench.tracking``.

Synthetic scenes with known identities, made to fail trackers the ways real video does (every scene is
seeded, so every run sees the same detections):

* ``crossing``: a crowd walking both ways in a narrow band, passing in front of each other;
* ``occlusion``: persons walking behind pillars, hidden for several to over fifteen frames;
* ``camera``: persons walking every way under a panning and shaking camera;
* ``dancers``: persons circling a common centre, swapping sides in front of and behind each other;
* ``clutter``: walkers among low-score false detections, static ghosts and NMS duplicates.

Every person is a 17-keypoint COCO body with a gait (:data:`BODY`), its own arm pose and
size by depth. What a detector and a pose network would give is drawn from what is visible: a person
covered by pillars or by persons in front (greater foot y) is missed below a quarter visible and
scored low below 60 %; boxes are the whole person with noise growing with the cover; a keypoint
covered by another person lands on that person's keypoint with a middling score (the classic mistake
of top-down pose networks), one behind a pillar scores near 0; random misses, false detections, ghosts
and duplicates are added per scene.

Every tracker gets the same detections: :class:`alphapose.tracking.PoseTracker` the poses, the peers
the boxes and scores, at their packages' defaults: ByteTrack and OC-SORT of ``boxmot`` and ByteTrack of
Roboflow's ``trackers`` (benchmark-only packages: ``make bench-tracking`` installs them). Each output is
scored against the ground truth with TrackEval (HOTA, IDF1, MOTA, identity switches; IoU 0.5 for
CLEAR and Identity) per scene type and overall, and IDF1, MOTA and switches again with py-motmetrics as
a cross-check. Two sanity rows: the ground truth itself (IDF1 1.0) and a new identity on every frame
(IDF1 near 0). Last, the time each tracker takes per frame with 5 and 20 walking persons, on one core.

Thirty scenes of each type are reported (seeds 0 to 29). The tracker's defaults were chosen on another
thirty of each (``--seeds 100:130``), so the figures are not those of settings fitted to them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alphapose.errors import CommandLineParser, run_command
from alphapose.pose.skeletons import COCO17, oks_sigmas
from alphapose.structures import Pose
from alphapose.tracking import PoseTracker, TrackerOptions, box_iou
from bench.cpu import cpu_model

WIDTH, HEIGHT = 1280, 720
# A standing COCO body (offsets from the hips' centre, pixels), and how far each point swings with the gait.
BODY = np.array(
    [
        (0, -150), (-5, -155), (5, -155), (-12, -150), (12, -150),  # nose, eyes, ears
        (-22, -120), (22, -120), (-28, -80), (28, -80), (-30, -42), (30, -42),  # shoulders, elbows, wrists
        (-12, 0), (12, 0), (-14, 45), (14, 45), (-15, 90), (15, 90),  # hips, knees, ankles
    ],
    dtype=float,
)  # fmt: skip
SWING = np.array([0, 0, 0, 0, 0, 0, 0, -6, 6, -12, 12, 0, 0, 8, -8, 15, -15], dtype=float)
FRAMES = 150
SEEDS = range(30)  # the scenes reported; the tracker's defaults were chosen on seeds 100 to 129
KINDS = ("crossing", "occlusion", "camera", "dancers", "clutter")
RESULTS = Path(__file__).parent / "results" / "tracking.json"
BODY_HEIGHT = float(BODY[:, 1].max() - BODY[:, 1].min())  # of the 170 px person, nose to ankle
ARMS = (7, 8, 9, 10)
Range = tuple[float, float]  # elbows and wrists: each person holds its arms its own way


# --- scenes ------------------------------------------------------------------------------------------


@dataclass
class Walker:
    """One person: foot position per frame (None: off the scene), height, gait phase and arm pose."""

    feet: Callable[[int], tuple[float, float] | None]
    height: float
    phase: float
    arms: np.ndarray  # (4, 2) offsets of the elbows and wrists, in the 170 px person's pixels

    def keypoints(self, frame: int, speed: float) -> np.ndarray:
        gait = 2 * np.pi * frame / 30 + self.phase
        points = BODY.copy()
        points[:, 0] += SWING * np.sin(gait) * (1 if speed >= 0 else -1) * min(abs(speed) / 2, 1.0)
        points[list(ARMS)] += self.arms
        points[:, 1] -= BODY[:, 1].max() + 8  # feet at 0
        return points * (self.height / BODY_HEIGHT)


@dataclass
class Scene:
    """The detections of each frame and the ground truth (identity, box) of each frame."""

    kind: str
    seed: int
    detections: list[list[Pose]] = field(default_factory=list)
    truth: list[list[tuple[int, np.ndarray]]] = field(default_factory=list)


@dataclass
class Clutter:
    """How much a scene adds to its true detections."""

    false_rate: float = 0.3  # false detections per frame, low scores, one or two frames long
    ghosts: int = 0  # static spots detected on about half the frames, in runs
    duplicates: float = 0.02  # share of detections doubled by an NMS miss
    miss: float = 0.03  # share of visible persons missed anyway


def walkers(kind: str, rng: np.random.Generator) -> tuple[list[Walker], list[np.ndarray], Callable, Clutter]:
    """The persons, pillars (xyxy), camera offset per frame and clutter of a scene kind."""

    def arms() -> np.ndarray:
        return rng.normal(0, 14, (4, 2))

    def depth_height(y: float) -> float:
        return 120 + 0.35 * (y - 300)

    def line(x0: float, y0: float, vx: float, vy: float, start: int = 0) -> Callable:
        return lambda t: None if t < start else (x0 + vx * (t - start), y0 + vy * (t - start))

    def both_ways(
        count: int, ys: Range, lefts: Range, rights: Range, speeds: Range, late: int = 0
    ) -> list[Walker]:
        """``count`` persons walking right (starting in ``lefts``) and left (in ``rights``) in turns,
        entering up to ``late`` frames after the scene starts."""
        walking = []
        for i in range(count):
            direction = 1 if i % 2 == 0 else -1
            y = rng.uniform(*ys)
            x0 = rng.uniform(*lefts) if direction > 0 else rng.uniform(*rights)
            speed = direction * rng.uniform(*speeds)
            start = int(rng.integers(0, late)) if late else 0
            walking.append(Walker(line(x0, y, speed, 0, start), depth_height(y), rng.uniform(0, 6), arms()))
        return walking

    people: list[Walker] = []
    pillars: list[np.ndarray] = []
    still = lambda t: (0.0, 0.0)  # noqa: E731
    camera: Callable = still
    clutter = Clutter()
    if kind == "crossing":
        people = both_ways(12, (470, 530), (-300, 500), (780, 1580), (2, 5))
    elif kind == "occlusion":
        pillars = [np.array([x, 0, x + w, HEIGHT]) for x, w in ((280, 110), (620, 150), (960, 120))]
        people = both_ways(7, (420, 640), (-100, 300), (980, 1380), (6, 12), late=40)
        clutter.false_rate = 0.2
    elif kind == "camera":
        for _ in range(9):
            y = rng.uniform(380, 650)
            angle = rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(1, 4)
            people.append(
                Walker(
                    line(rng.uniform(150, 1130), y, speed * np.cos(angle), 0.4 * speed * np.sin(angle)),
                    depth_height(y),
                    rng.uniform(0, 6),
                    arms(),
                )
            )
        pan = rng.uniform(3, 6) * rng.choice([-1, 1])
        shake = rng.normal(0, 7, (FRAMES, 2))
        camera = lambda t: (pan * t + shake[t, 0], 0.5 * pan * np.sin(t / 20) * 10 + shake[t, 1])  # noqa: E731
    elif kind == "dancers":
        centre, radius = np.array([640.0, 500.0]), np.array([260.0, 70.0])
        count = 6
        period = rng.uniform(70, 100)
        for i in range(count):
            offset = 2 * np.pi * i / count
            wobble = rng.uniform(0.8, 1.2)

            def feet(t: int, offset: float = offset, wobble: float = wobble) -> tuple[float, float]:
                angle = offset + 2 * np.pi * t / period
                return (centre[0] + wobble * radius[0] * np.cos(angle), centre[1] + radius[1] * np.sin(angle))

            people.append(Walker(feet, 170.0, rng.uniform(0, 6), arms()))
        clutter.false_rate = 0.2
    elif kind == "clutter":
        people = both_ways(6, (420, 640), (-200, 400), (880, 1480), (2, 6))
        clutter = Clutter(false_rate=1.5, ghosts=3, duplicates=0.12, miss=0.05)
    else:
        raise ValueError(f"unknown scene kind {kind!r}")
    return people, pillars, camera, clutter


def covered(points: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
    """Whether each point lies in any of ``boxes``."""
    if not boxes:
        return np.zeros(len(points), bool)
    stacked = np.stack(boxes)
    inside = (points[:, None, 0] >= stacked[None, :, 0]) & (points[:, None, 0] <= stacked[None, :, 2])
    inside &= (points[:, None, 1] >= stacked[None, :, 1]) & (points[:, None, 1] <= stacked[None, :, 3])
    return inside.any(axis=1)


def make_scene(kind: str, seed: int, frames: int = FRAMES) -> Scene:
    """A seeded scene of ``kind``: its detections and ground truth, frame by frame."""
    rng = np.random.default_rng([KINDS.index(kind) if kind in KINDS else 99, seed])
    people, pillars, camera, clutter = walkers(kind, rng)
    ghosts = [rng.uniform([100, 300], [1100, 500]) for _ in range(clutter.ghosts)]
    ghost_on = [False] * len(ghosts)
    scene = Scene(kind, seed)
    grid = np.stack(np.meshgrid(np.linspace(0.05, 0.95, 5), np.linspace(0.02, 0.98, 10)), -1).reshape(-1, 2)
    for t in range(frames):
        shift = np.array(camera(t))
        bodies = []  # (identity, keypoints in the image, box) of every person on the scene
        for identity, walker in enumerate(people, start=1):
            now, before = walker.feet(t), walker.feet(max(t - 1, 0))
            if now is None:
                continue
            speed = now[0] - before[0] if before is not None else 0.0
            points = walker.keypoints(t, speed) + np.array(now) - shift
            low, high = points.min(0), points.max(0)
            pad = 0.08 * (high[1] - low[1])
            box = np.array([low[0] - pad, low[1] - pad, high[0] + pad, high[1] + pad / 2])
            inside = np.clip(box, [0, 0, 0, 0], [WIDTH, HEIGHT, WIDTH, HEIGHT])
            if np.prod(inside[2:] - inside[:2]) < 0.5 * np.prod(box[2:] - box[:2]):
                continue
            bodies.append((identity, points, box))
        detections, truth = [], []
        for identity, points, box in bodies:
            front = [b for i, p, b in bodies if i != identity and b[3] > box[3]]
            samples = box[:2] + grid * (box[2:] - box[:2])
            visible = 1.0 - (covered(samples, pillars) | covered(samples, front)).mean()
            if visible < 0.25:
                continue
            truth.append((identity, box))
            if rng.random() < clutter.miss or (visible < 0.6 and rng.random() < 0.3):
                continue
            score = rng.uniform(0.55, 0.95) if visible >= 0.6 else rng.uniform(0.15, 0.5)
            size = box[3] - box[1]
            noisy = box + rng.normal(0, 0.02 * size + 0.06 * size * (1 - visible), 4)
            keypoints = points + rng.normal(0, 0.012 * size, points.shape)
            scores = rng.uniform(0.5, 0.95, len(points))
            by_pillar, by_person = covered(points, pillars), covered(points, front)
            scores[by_pillar] = rng.uniform(0.0, 0.08, by_pillar.sum())
            if by_person.any():
                occluder = min(
                    (p for i, p, b in bodies if i != identity and b[3] > box[3]),
                    key=lambda p: np.abs(p - points).sum(),
                )
                keypoints[by_person] = occluder[by_person] + rng.normal(0, 0.02 * size, (by_person.sum(), 2))
                scores[by_person] = rng.uniform(0.2, 0.5, by_person.sum())
            detections.append(_pose(noisy, score, keypoints, scores))
            if rng.random() < clutter.duplicates:
                double = noisy + np.array([1, 0, 1, 0]) * rng.choice([-1, 1]) * 0.15 * (noisy[2] - noisy[0])
                detections.append(
                    _pose(
                        double,
                        score * rng.uniform(0.5, 0.9),
                        keypoints + rng.normal(0, 0.03 * size, keypoints.shape),
                        scores * 0.8,
                    )
                )
        for _ in range(rng.poisson(clutter.false_rate)):
            detections.append(
                _random_pose(rng, rng.uniform([0, 200], [WIDTH - 80, HEIGHT - 200]), rng.uniform(0.1, 0.45))
            )
        for g, spot in enumerate(ghosts):
            ghost_on[g] = rng.random() < (0.8 if ghost_on[g] else 0.25)
            if ghost_on[g]:
                detections.append(_random_pose(rng, spot - shift, rng.uniform(0.3, 0.65), jitter=2.0))
        order = rng.permutation(len(detections))
        scene.detections.append([detections[i] for i in order])
        scene.truth.append(truth)
    return scene


def _pose(box: np.ndarray, score: float, keypoints: np.ndarray, scores: np.ndarray) -> Pose:
    return Pose(
        box.astype(np.float32), float(score), keypoints.astype(np.float32), scores.astype(np.float32), 1.0
    )


def _random_pose(rng: np.random.Generator, corner: np.ndarray, score: float, jitter: float = 0.0) -> Pose:
    """A false detection: a person-sized box at ``corner`` with keypoints strewn inside."""
    size = np.array([60.0, 150.0])
    box = np.concatenate([corner, corner + size]) + rng.normal(0, jitter, 4)
    keypoints = corner + rng.uniform(0, 1, (17, 2)) * size
    return _pose(box, score, keypoints, rng.uniform(0.0, 0.6, 17))


# --- trackers ------------------------------------------------------------------------------------------

Output = list[list[tuple[int, np.ndarray]]]  # per frame: (identity, xyxy box)


def run_ours(scene: Scene, options: TrackerOptions | None = None) -> Output:
    tracker = PoseTracker(options, oks_sigmas(COCO17))
    output: Output = [[] for _ in scene.detections]
    for frame, persons in tracker.track(enumerate(scene.detections)):
        output[frame] = [(identity, np.asarray(pose.box, np.float64)) for identity, pose in persons]
    return output


def _boxmot(name: str) -> Callable[[Scene], Output]:
    def run(scene: Scene) -> Output:
        logging.disable(logging.INFO)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if name == "bytetrack":
                from boxmot.trackers.box.bytetrack.tracker import ByteTrack as Tracker
            else:
                from boxmot.trackers.box.ocsort.tracker import OcSort as Tracker
            tracker = Tracker()
        output: Output = []
        for poses in scene.detections:
            detections = np.array([[*p.box, p.box_score, 0] for p in poses], np.float64).reshape(-1, 6)
            answer = np.asarray(tracker.update(detections, None)).reshape(-1, 8)
            output.append([(int(row[4]) + 1, detections[int(row[7]), :4]) for row in answer])
        return output

    return run


def run_roboflow_bytetrack(scene: Scene) -> Output:
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker()
    output: Output = []
    for poses in scene.detections:
        detections = sv.Detections(
            xyxy=np.array([p.box for p in poses], np.float32).reshape(-1, 4),
            confidence=np.array([p.box_score for p in poses], np.float32),
            class_id=np.zeros(len(poses), int),
        )
        answer = tracker.update(detections)
        output.append(
            [
                (int(i), box.astype(np.float64))
                for i, box in zip(answer.tracker_id, answer.xyxy, strict=True)
                if i >= 0
            ]
        )
    return output


def run_truth(scene: Scene) -> Output:
    return [list(frame) for frame in scene.truth]


def run_new_id_every_frame(scene: Scene) -> Output:
    counter = iter(range(1, 10**9))
    return [[(next(counter), box) for _, box in frame] for frame in scene.truth]


TRACKERS: dict[str, Callable[[Scene], Output]] = {
    "alphapose.PoseTracker": run_ours,
    "ByteTrack (boxmot)": _boxmot("bytetrack"),
    "OC-SORT (boxmot)": _boxmot("ocsort"),
    "ByteTrack (trackers)": run_roboflow_bytetrack,
}
SANITY: dict[str, Callable[[Scene], Output]] = {
    "ground truth": run_truth,
    "new id every frame": run_new_id_every_frame,
}


# --- scoring ---------------------------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return box_iou(a.reshape(-1, 4), b.reshape(-1, 4))


def trackeval_data(scene: Scene, output: Output) -> dict[str, Any]:
    """A sequence as TrackEval's metrics take it: identities renumbered from 0, IoU similarities."""
    gt_ids = sorted({i for frame in scene.truth for i, _ in frame})
    tr_ids = sorted({i for frame in output for i, _ in frame})
    gt_index, tr_index = {i: n for n, i in enumerate(gt_ids)}, {i: n for n, i in enumerate(tr_ids)}
    data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for truth, found in zip(scene.truth, output, strict=True):
        data["gt_ids"].append(np.array([gt_index[i] for i, _ in truth], int))
        data["tracker_ids"].append(np.array([tr_index[i] for i, _ in found], int))
        data["similarity_scores"].append(
            _iou(np.array([b for _, b in truth]), np.array([b for _, b in found]))
        )
    data |= {
        "num_timesteps": len(scene.truth),
        "num_gt_ids": len(gt_ids),
        "num_tracker_ids": len(tr_ids),
        "num_gt_dets": sum(len(f) for f in scene.truth),
        "num_tracker_dets": sum(len(f) for f in output),
        "seq": f"{scene.kind}-{scene.seed}",
    }
    return data


def trackeval_scores(sequences: list[dict[str, Any]]) -> dict[str, float]:
    """HOTA, IDF1, MOTA and identity switches over ``sequences`` (TrackEval's combination)."""
    import trackeval

    metrics = {
        "HOTA": trackeval.metrics.HOTA(),
        "CLEAR": trackeval.metrics.CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
        "Identity": trackeval.metrics.Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
    }
    combined = {}
    for name, metric in metrics.items():
        per_sequence = {data["seq"]: metric.eval_sequence(data) for data in sequences}
        combined[name] = metric.combine_sequences(per_sequence)
    return {
        "HOTA": float(np.mean(combined["HOTA"]["HOTA"])),
        "IDF1": float(combined["Identity"]["IDF1"]),
        "MOTA": float(combined["CLEAR"]["MOTA"]),
        "IDSW": int(combined["CLEAR"]["IDSW"]),
    }


def motmetrics_scores(scenes: list[Scene], outputs: list[Output]) -> dict[str, float]:
    """IDF1, MOTA and identity switches again with py-motmetrics (IoU distances computed here)."""
    import motmetrics as mm

    accumulators = []
    for scene, output in zip(scenes, outputs, strict=True):
        accumulator = mm.MOTAccumulator(auto_id=True)
        for truth, found in zip(scene.truth, output, strict=True):
            iou = _iou(np.array([b for _, b in truth]), np.array([b for _, b in found]))
            distance = np.where(iou >= 0.5, 1 - iou, np.nan)
            accumulator.update([i for i, _ in truth], [i for i, _ in found], distance)
        accumulators.append(accumulator)
    summary = mm.metrics.create().compute_many(
        accumulators, metrics=["idf1", "mota", "num_switches"], generate_overall=True
    )
    overall = summary.loc["OVERALL"]
    return {
        "IDF1": float(overall["idf1"]),
        "MOTA": float(overall["mota"]),
        "IDSW": int(overall["num_switches"]),
    }


def score_all(
    scenes: list[Scene], trackers: dict[str, Callable[[Scene], Output]]
) -> dict[str, dict[str, dict[str, float]]]:
    """{tracker: {scene kind or "overall": scores}}; motmetrics' figures beside the overall ones."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, run in trackers.items():
        print(f"[bench.tracking] {name}", file=sys.stderr, flush=True)
        outputs = [run(scene) for scene in scenes]
        data = [trackeval_data(s, o) for s, o in zip(scenes, outputs, strict=True)]
        rows = {
            kind: trackeval_scores([d for d, s in zip(data, scenes, strict=True) if s.kind == kind])
            for kind in KINDS
        }
        rows["overall"] = trackeval_scores(data)
        rows["overall (motmetrics)"] = motmetrics_scores(scenes, outputs)
        results[name] = rows
    return results


# --- time ------------------------------------------------------------------------------------------------


def time_per_frame(
    trackers: dict[str, Callable[[Scene], Output]], persons: int, frames: int = 300
) -> dict[str, float]:
    """Milliseconds per frame of each tracker on ``persons`` walkers with no clutter, on one core."""
    rng = np.random.default_rng(persons)

    def walking(x: float, y: float, speed: float) -> Callable[[int], tuple[float, float]]:
        return lambda t: (x + speed * t, y)

    people = [
        Walker(
            walking(rng.uniform(0, 1200), rng.uniform(350, 700), rng.uniform(-3, 3)),
            rng.uniform(100, 200),
            rng.uniform(0, 6),
            rng.normal(0, 14, (4, 2)),
        )
        for _ in range(persons)
    ]
    scene = Scene("timing", 0)
    for t in range(frames):
        poses = []
        for walker in people:
            points = walker.keypoints(t, 1.0) + walker.feet(t)
            box = np.concatenate([points.min(0) - 8, points.max(0) + 8])
            poses.append(_pose(box, 0.9, points, np.full(17, 0.9)))
        scene.detections.append(poses)
        scene.truth.append([])
    timings = {}
    for name, run in trackers.items():
        run(Scene("warm-up", 0, scene.detections[:5], scene.truth[:5]))
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            run(scene)
            best = min(best, time.perf_counter() - started)
        timings[name] = 1000 * best / frames
    return timings


# --- report ----------------------------------------------------------------------------------------------


def _head(title: str, columns: Iterable[str]) -> list[str]:
    """A titled markdown table's first lines: a tracker column, then ``columns`` right-aligned."""
    columns = list(columns)
    return ["", title, "", "| tracker | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]


def table(results: dict[str, Any]) -> str:
    lines = _head("Overall (TrackEval):", ("IDF1", "HOTA", "MOTA", "ID switches"))
    for name, rows in results["scores"].items():
        r = rows["overall"]
        lines.append(f"| {name} | {r['IDF1']:.3f} | {r['HOTA']:.3f} | {r['MOTA']:.3f} | {r['IDSW']} |")
    lines += _head("IDF1 / HOTA per scene type:", KINDS)
    for name, rows in results["scores"].items():
        if name in SANITY:
            continue
        cells = [f"{rows[k]['IDF1']:.3f} / {rows[k]['HOTA']:.3f}" for k in KINDS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _head("py-motmetrics, overall:", ("IDF1", "MOTA", "ID switches"))
    for name, rows in results["scores"].items():
        r = rows["overall (motmetrics)"]
        lines.append(f"| {name} | {r['IDF1']:.3f} | {r['MOTA']:.3f} | {r['IDSW']} |")
    lines += _head("Time per frame on one core (ms):", (f"{n} persons" for n in results["timing"]))
    for name in TRACKERS:
        cells = [f"{results['timing'][n][name]:.3f}" for n in results["timing"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    parser = CommandLineParser(prog="python -m bench.tracking", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file ({RESULTS.name})")
    parser.add_argument("--quick", action="store_true", help="one seed per scene type, no timing")
    parser.add_argument(
        "--seeds", default=f"{SEEDS.start}:{SEEDS.stop}", help="scenes FIRST:STOP of each type (%(default)s)"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, for the timing
    first, _, stop = args.seeds.partition(":")
    try:
        seeds = range(int(first), int(stop))
    except ValueError:
        parser.error(f"--seeds {args.seeds}: give FIRST:STOP, e.g. 0:30")
    scenes = [make_scene(kind, seed) for kind in KINDS for seed in (seeds[:1] if args.quick else seeds)]
    results: dict[str, Any] = {
        "seeds": args.seeds,
        "scenes": len(scenes),
        "frames": FRAMES,
        "cpu": cpu_model(),
    }
    results["scores"] = score_all(scenes, TRACKERS | SANITY)
    results["timing"] = {} if args.quick else {n: time_per_frame(TRACKERS, n) for n in (5, 20)}
    print(table(results))
    if not args.quick:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_command(
        main,
        "bench.tracking",
        "make bench-tracking installs the peers compared into the project's Python and runs it",
    )
