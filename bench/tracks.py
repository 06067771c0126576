"""Keyframes kept per track and the error CVAT's interpolation leaves: ``python -m bench.tracks``.

A synthetic clip of walking persons (COCO's 17 keypoints, 640x480, 300 frames at 30 frames/s): four
persons cross the frame at 1 to 3 px per frame with a one-second gait (ankles swing 15 px, wrists 12,
knees and elbows half that, the head bobs 2 px), enter and leave at the borders, one is hidden for ten
frames, and each has a wrist below the keypoint threshold for a few frames. The clip is run twice: with
the model's points on the exact trajectories, and with 1 px of Gaussian jitter on every point, as a
real model's points shake. For each tolerance the tracks are built as ``annotate-task`` builds them
(:func:`alphapose.cvat.skeleton_tracks.build_tracks`) and re-interpolated as CVAT does
(:func:`alphapose.cvat.skeleton_tracks.cvat_view`) on every frame: reported are the keyframes per track, the
share of the person-frames they are, the error of the visible points against the model's points
(mean, 99th percentile, largest) and, with jitter, against the exact trajectory, and the time the
tracks took to build. Keyframes include the ``outside`` ones where a person leaves, which are not
person-frames (so the share can pass 100 %).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from alphapose.cvat.skeleton_tracks import build_tracks, cvat_view
from alphapose.pose.skeletons import COCO17, oks_sigmas
from alphapose.structures import Pose
from alphapose.tracking import PoseTracker

FRAMES = 300
WIDTH, HEIGHT = 640, 480
TOLERANCES = (0.5, 1.0, 2.0, 4.0, 8.0)
THRESHOLD = 0.4
# COCO17 points around the hip centre of a 170 px person, and how far each swings with the gait.
BODY = np.array(
    [
        (0, -150), (-5, -155), (5, -155), (-12, -150), (12, -150),  # nose, eyes, ears
        (-22, -120), (22, -120), (-28, -80), (28, -80), (-30, -42), (30, -42),  # shoulders, elbows, wrists
        (-12, 0), (12, 0), (-14, 45), (14, 45), (-15, 90), (15, 90),  # hips, knees, ankles
    ],
    dtype=float,
)  # fmt: skip
SWING = np.array([0, 0, 0, 0, 0, 0, 0, -6, 6, -12, 12, 0, 0, 8, -8, 15, -15], dtype=float)
PERSONS = (  # start x, y, speed (px/frame), gait phase
    (-40.0, 260.0, 2.0, 0.0),
    (680.0, 300.0, -1.5, 1.0),
    (-40.0, 380.0, 3.0, 2.0),
    (150.0, 240.0, 1.0, 0.5),
)
HIDDEN = (3, range(120, 130))  # person index, frames
WRIST = 9  # left wrist: below the threshold on frames 60..65 of every person's walk


def clip(jitter: float, seed: int = 0) -> tuple[list[tuple[int, list[tuple[int, Pose]]]], dict]:
    """The frames as :class:`alphapose.tracking.PoseTracker` tracks them (its identities, its output
    policy), and the exact points per (track id, frame) where the person is visible."""
    rng = np.random.default_rng(seed)
    frames = []
    exact_by_pose: dict[int, np.ndarray] = {}
    for frame in range(FRAMES):
        persons = []
        for index, (x0, y0, speed, phase) in enumerate(PERSONS):
            x = x0 + speed * frame
            if not 0 <= x < WIDTH or (index == HIDDEN[0] and frame in HIDDEN[1]):
                continue
            gait = 2 * np.pi * frame / 30 + phase
            points = BODY.copy()
            points[:, 0] += SWING * np.sin(gait) * np.sign(speed)
            points += [x, y0 + 2 * np.sin(2 * gait)]
            seen = points + rng.normal(0, jitter, points.shape) if jitter else points
            scores = np.full(17, 0.9)
            if 60 <= frame - max(0, int(-x0 / speed) if speed > 0 else 0) < 66:
                scores[WRIST] = 0.1
            low, high = seen.min(axis=0), seen.max(axis=0)
            pose = Pose(
                np.array([*low, *high], np.float32),
                0.9,
                seen.astype(np.float32),
                scores.astype(np.float32),
                1.0,
            )
            exact_by_pose[id(pose)] = points
            persons.append(pose)
        frames.append((frame, persons))
    tracked = list(PoseTracker(sigmas=oks_sigmas(COCO17)).track(frames))
    exact = {(i, frame): exact_by_pose[id(pose)] for frame, persons in tracked for i, pose in persons}
    return tracked, exact


def measure(jitter: float, tolerance: float) -> dict[str, Any]:
    frames, exact = clip(jitter)
    started = time.perf_counter()
    tracks = build_tracks(frames, 17, keypoint_threshold=THRESHOLD, tolerance=tolerance)
    seconds = time.perf_counter() - started
    errors, truth_errors, person_frames = [], [], 0
    for track in tracks:
        for frame, persons in frames:
            for track_id, pose in persons:
                if track_id != track.track_id:
                    continue
                person_frames += 1
                view = cvat_view(track, frame)
                assert view is not None
                points, visible = view
                assert (visible == (pose.keypoint_scores >= THRESHOLD)).all()
                errors += np.linalg.norm(points - pose.keypoints, axis=1)[visible].tolist()
                truth_errors += np.linalg.norm(points - exact[(track_id, frame)], axis=1)[visible].tolist()
    keyframes = sum(len(track.keyframes) for track in tracks)
    return {
        "jitter_px": jitter,
        "tolerance_px": tolerance,
        "tracks": len(tracks),
        "person_frames": person_frames,
        "keyframes_per_track": keyframes / len(tracks),
        "keyframe_share": keyframes / person_frames,
        "error_mean_px": float(np.mean(errors)),
        "error_p99_px": float(np.percentile(errors, 99)),
        "error_max_px": float(np.max(errors)),
        "error_vs_exact_mean_px": float(np.mean(truth_errors)),
        "build_ms": seconds * 1000,
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| jitter | tolerance | keyframes/track | of person-frames | error mean / p99 / max "
        "| vs exact, mean | build |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['jitter_px']:g} px | {r['tolerance_px']:g} px | {r['keyframes_per_track']:.1f} | "
            f"{100 * r['keyframe_share']:.1f} % | {r['error_mean_px']:.2f} / {r['error_p99_px']:.2f} / "
            f"{r['error_max_px']:.2f} px | {r['error_vs_exact_mean_px']:.2f} px | {r['build_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = [measure(jitter, tolerance) for jitter in (0.0, 1.0) for tolerance in TOLERANCES]
    frames, _ = clip(0.0)
    print(f"{FRAMES} frames, {len(PERSONS)} persons, {sum(len(p) for _, p in frames)} person-frames")
    print(render(rows))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
