"""Pose tracking: one identity per person across the frames of a video, from the poses alone.

What AlphaPose ships, and what was chosen here:

* PoseFlow (``trackers/PoseFlow``, its ``--pose_flow``) scores every pair of a person of the previous
  frames and a person of this frame by box IoU, ORB feature matches inside the boxes and a "pose IoU"
  (squares of fixed size around the keypoints), weighted, and matches them with the Hungarian method
  (threshold 0.2), looking back up to 100 frames for persons not seen lately. It keeps every frame's
  results in memory, writes the feature matches of each frame pair to files, and has no motion model:
  a person hidden for a few frames is found again only where it was last seen.
* Its ReID tracker (``--pose_track``, ``trackers/tracker_api.py``, JDE-style) adds a Kalman filter and
  appearance embeddings from a separate ReID network (OSNet), whose weights must be downloaded, and
  waits 240 frames for a lost person.
* ByteTrack associates detector boxes with Kalman-predicted track boxes by IoU and an optimal assignment
  (``lap``), in two rounds: confident detections first, then the low-score ones to the tracks still
  unmatched, so a person half hidden (and so scored low) keeps its track; a lost track waits 30 frames
  (``track_buffer``) and only confident unmatched detections start tracks.
* OC-SORT keeps that structure but trusts observations over the filter: after a gap it re-anchors on the
  last observation and has a second round that matches unmatched tracks by their last observed box,
  which recovers persons whose motion was not linear while hidden.

This tracker takes from each what serves skeletons without extra networks: the similarity is box IoU
and OKS (COCO's object keypoint similarity with the preset's sigmas; :func:`alphapose.skeletons.oks_sigmas`)
mixed by ``iou_weight``, since the keypoints tell apart two persons whose boxes coincide, which box
trackers cannot; the assignment is the optimal one (``scipy.optimize.linear_sum_assignment`` maximising
the total similarity; pairs below ``min_similarity`` are never matched); the motion model is constant
velocity on the box corners and on every keypoint, estimated from successive observations and smoothed
(``velocity_smoothing``), which carries a person through a short occlusion (a Kalman filter's covariance
adds little to a constant-velocity prediction when only the prediction enters the cost); and, as in
OC-SORT, a second round matches the tracks left over by their last observation. Every pose starts or
continues a track, whatever its score, so a person scored low while half hidden is never dropped (the
ByteTrack insight; filtering by score is left to the output). A track is tentative until it has been
matched in ``min_hits`` consecutive frames and a tentative track ends at its first miss, so a one-frame
false detection cannot capture a person later; a confirmed track waits ``max_age`` frames. Identities
are counted from 1 and never given twice until :meth:`PoseTracker.reset`. Nothing is written to disk
and the state is the live tracks only, so memory is flat in the video's length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.optimize import linear_sum_assignment

from alphapose.errors import OptionError
from alphapose.pipeline import Pose, PosePipeline
from alphapose.video import frame_poses


@dataclass(frozen=True)
class TrackerOptions:
    """Every setting of a :class:`PoseTracker`, checked when built.

    ``iou_weight`` is the share of box IoU in the similarity, the rest being OKS (IoU alone without
    sigmas, or for a pair with no keypoint above ``keypoint_threshold`` in both poses). ``max_age`` and
    ``min_hits`` count frames. ``velocity_smoothing`` is the weight of the newest velocity estimate.
    """

    iou_weight: float = 0.5
    min_similarity: float = 0.2
    max_age: int = 30
    min_hits: int = 3
    keypoint_threshold: float = 0.05
    velocity_smoothing: float = 0.5

    def __post_init__(self) -> None:
        """Refuse a bad value now, naming the option."""
        problems = {
            "iou_weight": _unit_interval(self.iou_weight),
            "min_similarity": None if 0.0 < self.min_similarity <= 1.0 else "must be in (0, 1]",
            "max_age": _count(self.max_age, 0),
            "min_hits": _count(self.min_hits, 1),
            "keypoint_threshold": _unit_interval(self.keypoint_threshold),
            "velocity_smoothing": _unit_interval(self.velocity_smoothing),
        }
        for name, problem in problems.items():
            if problem:
                raise OptionError(name, getattr(self, name), problem)


TRACKER_OPTION_NAMES = tuple(f.name for f in fields(TrackerOptions))


def _unit_interval(value: float) -> str | None:
    return None if isinstance(value, int | float) and 0.0 <= value <= 1.0 else "must be in [0, 1]"


def _count(value: int, least: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a whole number of frames"
    return None if value >= least else f"must be at least {least}"


@dataclass
class _Track:
    """One person's latest observation and velocity (per frame)."""

    track_id: int
    box: np.ndarray  # (4,) xyxy
    keypoints: np.ndarray  # (K, 2)
    visible: np.ndarray  # (K,) bool: keypoint score at least the threshold
    last_frame: int
    hits: int = 1
    confirmed: bool = False
    box_velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    keypoint_velocity: np.ndarray | None = None

    def predicted(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Box and keypoints moved on at constant velocity to ``frame``."""
        gap = frame - self.last_frame
        keypoint_velocity = 0.0 if self.keypoint_velocity is None else self.keypoint_velocity
        return self.box + self.box_velocity * gap, self.keypoints + keypoint_velocity * gap


class PoseTracker:
    """Frame-to-frame association of poses (see the module docstring for the design).

    ``sigmas`` are the preset's OKS sigmas, one per keypoint (:func:`alphapose.skeletons.oks_sigmas`);
    None tracks by box IoU alone.
    """

    def __init__(self, options: TrackerOptions | None = None, sigmas: Sequence[float] | None = None) -> None:
        self.options = options or TrackerOptions()
        self.sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64)
        if self.sigmas is not None and (self.sigmas.ndim != 1 or not (self.sigmas > 0).all()):
            raise ValueError(f"sigmas must be one positive number per keypoint, got {sigmas!r}")
        self.reset()

    def reset(self) -> None:
        """Forget every track and count identities from 1 again (a new video)."""
        self._tracks: list[_Track] = []
        self._frame = -1
        self._next_id = 1

    @property
    def active_ids(self) -> list[int]:
        """The identities that may still be continued, oldest first."""
        return [track.track_id for track in self._tracks]

    def update(self, poses: Sequence[Pose]) -> list[int]:
        """The identity of each pose of the next frame, in the order given; call once per frame."""
        self._frame += 1
        frame, options = self._frame, self.options
        boxes = np.array([p.box for p in poses], dtype=np.float64).reshape(-1, 4)
        keypoints = [np.asarray(p.keypoints, dtype=np.float64) for p in poses]
        visible = [np.asarray(p.keypoint_scores) >= options.keypoint_threshold for p in poses]
        if self.sigmas is not None:
            for kp in keypoints:
                if len(kp) != len(self.sigmas):
                    raise ValueError(
                        f"a pose has {len(kp)} keypoints but there are {len(self.sigmas)} sigmas"
                    )

        assigned: dict[int, _Track] = {}
        waiting = list(range(len(self._tracks)))
        detections = list(range(len(poses)))
        for use_motion in (True, False):  # predicted positions, then the last observations (OC-SORT)
            if not waiting or not detections:
                break
            states = [
                self._tracks[t].predicted(frame)
                if use_motion
                else (self._tracks[t].box, self._tracks[t].keypoints)
                for t in waiting
            ]
            similarity = self._similarity(
                np.array([s[0] for s in states]),
                [s[1] for s in states],
                [self._tracks[t].visible for t in waiting],
                boxes[detections],
                [keypoints[d] for d in detections],
                [visible[d] for d in detections],
            )
            similarity[similarity < options.min_similarity] = 0.0
            rows, cols = linear_sum_assignment(similarity, maximize=True)
            matched = [(r, c) for r, c in zip(rows, cols, strict=True) if similarity[r, c] > 0.0]
            for r, c in matched:
                assigned[detections[c]] = self._tracks[waiting[r]]
            matched_rows, matched_cols = {r for r, _ in matched}, {c for _, c in matched}
            waiting = [t for i, t in enumerate(waiting) if i not in matched_rows]
            detections = [d for i, d in enumerate(detections) if i not in matched_cols]

        for d, track in assigned.items():
            self._observe(track, boxes[d], keypoints[d], visible[d])
        ended = {id(self._tracks[t]) for t in waiting if self._ends(self._tracks[t])}
        self._tracks = [t for t in self._tracks if id(t) not in ended]
        for d in detections:
            track = _Track(self._next_id, boxes[d], keypoints[d], visible[d], frame)
            track.confirmed = options.min_hits <= 1
            self._next_id += 1
            self._tracks.append(track)
            assigned[d] = track
        return [assigned[d].track_id for d in range(len(poses))]

    def _ends(self, track: _Track) -> bool:
        """A track left unmatched this frame ends: at once while tentative, else after ``max_age``."""
        return not track.confirmed or self._frame - track.last_frame > self.options.max_age

    def _observe(self, track: _Track, box: np.ndarray, keypoints: np.ndarray, visible: np.ndarray) -> None:
        gap = self._frame - track.last_frame
        weight = self.options.velocity_smoothing if track.hits > 1 else 1.0
        track.box_velocity = weight * (box - track.box) / gap + (1 - weight) * track.box_velocity
        step = (keypoints - track.keypoints) / gap
        both = (visible & track.visible)[:, None]
        if track.keypoint_velocity is None:
            track.keypoint_velocity = np.where(both, step, 0.0)
        else:
            smoothed = weight * step + (1 - weight) * track.keypoint_velocity
            track.keypoint_velocity = np.where(both, smoothed, track.keypoint_velocity)
        track.box, track.keypoints, track.visible = box, keypoints, visible
        track.last_frame = self._frame
        track.hits += 1
        track.confirmed = track.confirmed or track.hits >= self.options.min_hits

    def _similarity(
        self,
        track_boxes: np.ndarray,
        track_keypoints: list[np.ndarray],
        track_visible: list[np.ndarray],
        boxes: np.ndarray,
        keypoints: list[np.ndarray],
        visible: list[np.ndarray],
    ) -> np.ndarray:
        """(tracks, poses) similarity in [0, 1]: IoU, mixed with OKS where both poses show keypoints."""
        iou = box_iou(track_boxes, boxes)
        if self.sigmas is None:
            return iou
        oks, shown = object_keypoint_similarity(
            np.stack(track_keypoints),
            np.stack(track_visible),
            _areas(track_boxes),
            np.stack(keypoints),
            np.stack(visible),
            _areas(boxes),
            self.sigmas,
        )
        weight = self.options.iou_weight
        return np.where(shown, weight * iou + (1 - weight) * oks, iou)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of xyxy boxes; 0 for boxes without area."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def object_keypoint_similarity(
    keypoints_a: np.ndarray,
    visible_a: np.ndarray,
    areas_a: np.ndarray,
    keypoints_b: np.ndarray,
    visible_b: np.ndarray,
    areas_b: np.ndarray,
    sigmas: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """OKS of every pair (A, B): the mean over keypoints visible in both of
    exp(-d² / (2 · s² · (2σ)²)), s² the mean of the two box areas, as AlphaPose's ``oks_iou`` computes
    it; and whether the pair has any keypoint visible in both (else its OKS is 0)."""
    squared = ((keypoints_a[:, None] - keypoints_b[None]) ** 2).sum(-1)  # (A, B, K)
    scale = (areas_a[:, None] + areas_b[None]) / 2 + np.spacing(1)
    exponent = squared / ((2 * sigmas) ** 2) / scale[..., None] / 2
    both = visible_a[:, None] & visible_b[None]
    count = both.sum(-1)
    total = (np.exp(-exponent) * both).sum(-1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0), count > 0


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=-1)


def track_video(
    pipeline: PosePipeline,
    frames: Iterable[np.ndarray],
    tracker: PoseTracker,
    frame_batch: int | None = None,
) -> Iterator[tuple[int, list[tuple[int, Pose]]]]:
    """``(frame index, [(identity, pose), ...])`` for each RGB frame, as the frames arrive.

    Frames are read, estimated and tracked ``frame_batch`` at a time (default: the device's,
    :func:`alphapose.video.default_frame_batch`), so memory does not grow with the video's length.
    """
    for index, poses in enumerate(frame_poses(pipeline, frames, frame_batch)):
        yield index, list(zip(tracker.update(poses), poses, strict=True))
