"""``annotate-task``'s checkpoint (tools/checkpoint.py) on its own: what it keeps in memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from alphapose.structures import Pose
from tools.checkpoint import TaskCheckpoint

K = 17


def pose(seed: int) -> Pose:
    rng = np.random.default_rng(seed)
    return Pose(
        box=rng.uniform(0, 500, 4).astype(np.float32),
        box_score=0.9,
        keypoints=rng.uniform(0, 500, (K, 2)).astype(np.float32),
        keypoint_scores=rng.uniform(0, 1, K).astype(np.float32),
        score=2.0,
    )


def test_frames_added_are_on_disk_not_in_memory(tmp_path: Path) -> None:
    """A long task's poses go to the file; holding them in memory as well would grow with the video
    (a few kB a pose) for nothing, since only the frames read back at the start are used."""
    path = tmp_path / "task.checkpoint.jsonl"
    poses = [pose(i) for i in range(10)]
    checkpoint = TaskCheckpoint(path, {"task": 1}, resume=False)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for frame in range(200):
            checkpoint.add(frame, poses)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        checkpoint.close()
    assert grown < 200_000, f"{grown} bytes held for 2000 poses written"
    resumed = TaskCheckpoint(path, {"task": 1}, resume=True)
    resumed.close()
    assert sorted(resumed.done) == list(range(200))
    np.testing.assert_array_equal(resumed.done[199][3].keypoints, poses[3].keypoints)
