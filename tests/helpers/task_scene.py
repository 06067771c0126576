"""The annotate-task scene the tools' and the end-to-end tests share: two persons walking through a task
of numbered frames on the stub CVAT server, each pose carrying the person it was made for."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cvat_server_stub import ImageTask, cvat_labels
from PIL import Image

import tools.annotate_task as annotate_task
from alphapose.cvat.spec import label_spec
from alphapose.pose.presets import get_preset
from alphapose.structures import Pose, pose_score

SKELETON = get_preset("fastpose_res50_coco").skeleton
K = SKELETON.num_keypoints
TASK = 5
RNG = np.random.default_rng(0)
TEMPLATE = RNG.uniform(-30, 30, (K, 2))  # a person's points around its centre


def frame_image(number: int) -> bytes:
    """A frame whose pixels say its number (lossless PNG), so the stand-in pipeline knows the frame."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (number, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def person_points(track_id: int, frame: int) -> np.ndarray:
    """Person 1 walks right and stops at frame 6; person 2 walks down and left, swinging."""
    if track_id == 1:
        return TEMPLATE + np.array([100 + 5 * min(frame, 6), 200])
    return TEMPLATE + np.array([400 - 2 * frame, 100 + 3 * frame + 4 * np.sin(frame / 2)])


def present(track_id: int, frame: int) -> bool:
    return frame < 8 if track_id == 1 else frame >= 3


def scores(track_id: int, frame: int) -> np.ndarray:
    """Person 2's first point drops below the threshold on frames 5 and 6."""
    values = np.full(K, 0.9)
    if track_id == 2 and frame in (5, 6):
        values[0] = 0.1
    return values


def coco_labels() -> list[dict[str, Any]]:
    return cvat_labels(label_spec(SKELETON), TASK)


def make_task(frames: int, labels: list[dict[str, Any]] | None = None, **options: Any) -> ImageTask:
    images = [(f"frame_{i:06d}.png", frame_image(i)) for i in range(frames)]
    return ImageTask(
        TASK, coco_labels() if labels is None else labels, images, [(64, 48)] * frames, **options
    )


def scene_poses(frame: int, *, identity_as_score: bool = False) -> list[Pose]:
    """The scene's persons on a frame with box score 0.9, scored as the pipeline scores, or with the
    person's number as the score (``identity_as_score``: what a stand-in tracker reads the identity from)."""
    poses = []
    for track_id in (1, 2):
        if present(track_id, frame):
            points = person_points(track_id, frame).astype(np.float32)
            keypoint_scores = scores(track_id, frame).astype(np.float32)
            poses.append(
                Pose(
                    box=np.array([*points.min(axis=0), *points.max(axis=0)], dtype=np.float32),
                    box_score=0.9,
                    keypoints=points,
                    keypoint_scores=keypoint_scores,
                    score=float(track_id) if identity_as_score else pose_score(keypoint_scores, 0.9),
                )
            )
    return poses


def own_sdk_cache(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Every CVAT client the annotate-task command makes, in this process or in a subprocess, caches
    under ``directory``. The SDK reads its default directory (``XDG_CACHE_HOME``) once, when imported,
    and a cache shared between tests, keyed by server address, would hand one stub server's task
    metadata to a later one on the same port."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(directory))
    make_client = annotate_task._client

    def client_with_own_cache(host: str, auth: str | None) -> Any:
        made = make_client(host, auth)
        made.config.cache_dir = directory
        return made

    monkeypatch.setattr(annotate_task, "_client", client_with_own_cache)
