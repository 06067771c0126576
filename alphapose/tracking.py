"""Pose tracking: one identity per person across the frames of a video, from the poses alone.

Written here, not taken from a package: the maintained implementations of ByteTrack and OC-SORT either
carry a licence this Apache-2.0 library cannot depend on (boxmot: AGPL-3.0) or score pairs by box IoU
alone behind an interface with no room for keypoints (Roboflow's ``trackers``). The structure is theirs,
the pose is extra evidence:

* **Motion**: a Kalman filter per track on the box centre, width and height and their velocities
  (constant velocity; noise proportional to the box height, as ByteTrack's), run for every track at
  once. A track not seen last frame is predicted from its last observation, moved on by its trend (the
  centre's velocity fitted to its last observations) slowed by ``motion_damping`` each missed frame, at
  its last observed size, so a box hidden for 15 frames neither swells, shrinks nor flies off.
* **Camera**: where the tracks seen last frame and the confident poses clearly overlapping them agree
  on a shift (their median, beyond its standard error), every prediction is moved by it: a pan or a
  shake moves every person at once (``follow_camera``).
* **Re-anchoring** (OC-SORT): a track found again after a gap restarts from the new observation with
  its trend across the gap as velocity, rather than from the drifted prediction.
* **Two kinds of evidence, one scale**: the similarity of a track and a pose is box IoU times
  ``1 - s * (1 - OKS)``, where OKS (COCO's object keypoint similarity with the preset's sigmas,
  :func:`alphapose.pose.skeletons.oks_sigmas`) compares the two bodies moved to their boxes' centres and
  scaled to unit height, and ``s`` grows with the share of keypoints seen in both (up to
  ``1 - iou_weight``): a pair with no keypoint in common is scored by IoU alone, and the pose can lower
  a pair's score but never make a match of boxes that do not overlap.
* **Rounds** (ByteTrack): poses scoring at least ``high_score`` (the detector's box score) are matched
  first to the confirmed tracks; the poses scoring between ``low_score`` and ``high_score`` then only
  continue confirmed tracks, at a stricter ``low_similarity``; tentative tracks come last. Each round is
  the optimal assignment (``scipy.optimize.linear_sum_assignment``); pairs less similar than the
  round's bound never match, ``lost_discount`` of it for a track not seen last frame.
* **Life of a track**: only an unmatched pose scoring at least ``start_score`` whose keypoints score like
  a body's (``start_keypoint_score``) starts one. It is tentative until matched ``min_hits`` times and
  survives ``tentative_misses`` missed frames meanwhile, so a person who flickers in and out still gets
  one identity; a confirmed track waits ``max_age`` frames.
* **Output**: a frame is handed back once every tentative track in it is settled: poses of tracks
  that were confirmed come back with their identity, from their first frame on (CVAT needs the
  frames before confirmation); poses of tracks that ended tentative, and low-score poses that
  continued nothing, are dropped. Frames come back in order; :meth:`PoseTracker.finish` hands back
  the rest at the end of the video.

The measurements behind these choices, against ByteTrack and OC-SORT, are in ``docs/tracking.md``.
Identities are counted from 1 in the order tracks are confirmed, and never given twice until
:meth:`PoseTracker.reset`. The state is the live tracks and the few frames not yet settled, so memory
is flat in the video's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from alphapose.errors import OptionError, install_hint

if TYPE_CHECKING:
    from alphapose.pipeline import PosePipeline
    from alphapose.structures import Pose


@dataclass(frozen=True)
class TrackerOptions:
    """Every setting of a :class:`PoseTracker`, checked when built.

    Scores are the detector's box scores (``Pose.box_score``). ``iou_weight`` is the share of box IoU
    in the similarity of a pair whose keypoints are all visible in both poses (the rest is OKS).
    ``max_age``, ``min_hits`` and ``tentative_misses`` count frames. ``motion_damping`` is the share
    of a track's velocity kept for each frame it is not seen.
    """

    high_score: float = 0.4
    low_score: float = 0.1
    start_score: float = 0.6
    start_keypoint_score: float = 0.4
    iou_weight: float = 0.7
    min_similarity: float = 0.2
    low_similarity: float = 0.4
    lost_discount: float = 0.6
    max_age: int = 30
    min_hits: int = 3
    tentative_misses: int = 2
    keypoint_threshold: float = 0.3
    motion_damping: float = 1.0
    follow_camera: bool = True

    def __post_init__(self) -> None:
        """Refuse a bad value now, naming the option."""
        problems = {name: _unit_interval(getattr(self, name)) for name in _UNIT_OPTIONS}
        problems |= {
            "min_similarity": _bound(self.min_similarity),
            "low_similarity": _bound(self.low_similarity),
            "max_age": _count(self.max_age, 0),
            "min_hits": _count(self.min_hits, 1),
            "tentative_misses": _count(self.tentative_misses, 0),
            "follow_camera": None if isinstance(self.follow_camera, bool) else "must be true or false",
        }
        if not problems["low_score"] and not problems["high_score"] and self.low_score > self.high_score:
            problems["low_score"] = f"must be at most high_score ({self.high_score})"
        for name, problem in problems.items():
            if problem:
                raise OptionError(name, getattr(self, name), problem)


_UNIT_OPTIONS = (
    "high_score",
    "low_score",
    "start_score",
    "start_keypoint_score",
    "iou_weight",
    "lost_discount",
    "keypoint_threshold",
    "motion_damping",
)
TRACKER_OPTION_NAMES = tuple(f.name for f in fields(TrackerOptions))


def _unit_interval(value: float) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    return None if ok else "must be in [0, 1]"


def _bound(value: float) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 < value <= 1.0
    return None if ok else "must be in (0, 1]"


def _count(value: int, least: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a whole number of frames"
    return None if value >= least else f"must be at least {least}"


class TrackedFrame(NamedTuple):
    """One settled frame: the handle given with its poses, and its tracked persons in the given order."""

    frame: Any
    persons: list[tuple[int, Pose]]

    def above(self, threshold: float) -> TrackedFrame:
        """The frame with the persons whose box score is at least ``threshold``: the one rule for
        ``--threshold`` on a video, applied after tracking, so a person scored low while half hidden
        still carries its track through (the tracker sees every pose)."""
        return TrackedFrame(
            self.frame, [(i, pose) for i, pose in self.persons if pose.box_score >= threshold]
        )


# The Kalman filter's state is (cx, cy, w, h, vx, vy, vw, vh); it observes (cx, cy, w, h). Noise is in
# shares of the box height, ByteTrack's choice: the same person far away moves fewer pixels.
_TRANSITION = np.eye(8) + np.eye(8, k=4)
_POSITION_NOISE = 1 / 20
_VELOCITY_NOISE = 1 / 160
_HISTORY = 10  # observations a track's trend is fitted to
# The camera's motion (PoseTracker._follow_camera): the pairs it is measured on, how many, how sure.
_CAMERA_SIMILARITY = 0.3
_CAMERA_MATCHES = 3
_CAMERA_SIGNIFICANCE = 2.0
_START_KEYPOINTS = 17


def _xyxy_to_state(box: np.ndarray) -> np.ndarray:
    return np.concatenate([(box[..., :2] + box[..., 2:]) / 2, box[..., 2:] - box[..., :2]], axis=-1)


def _state_to_xyxy(state: np.ndarray) -> np.ndarray:
    half = state[..., 2:4] / 2
    return np.concatenate([state[..., :2] - half, state[..., :2] + half], axis=-1)


def _initial_covariance(heights: np.ndarray) -> np.ndarray:
    std = np.stack([*(2 * _POSITION_NOISE * heights,) * 4, *(10 * _VELOCITY_NOISE * heights,) * 4], axis=-1)
    return np.einsum("ni,ij->nij", std**2, np.eye(8))


class _Track:
    """One person: the filter's state, its last observation and its recent centres (for the trend)."""

    def __init__(self, box: np.ndarray, keypoints: np.ndarray, visible: np.ndarray, frame: int) -> None:
        self.track_id = 0  # given when confirmed
        self.mean = np.concatenate([_xyxy_to_state(box), np.zeros(4)])
        self.covariance = _initial_covariance(np.array([self.mean[3]]))[0]
        self.box, self.keypoints, self.visible = box, keypoints, visible
        self.last_frame = frame
        self.hits = 1
        self.ended = False
        self.history: deque[tuple[int, np.ndarray]] = deque([(frame, self.mean[:2])], maxlen=_HISTORY)

    def trend(self) -> np.ndarray:
        """The centre's velocity fitted to the recent observations (least squares), for a prediction
        through a gap: one noisy last step does not send a hidden person off course."""
        if len(self.history) < 2:
            return np.zeros(2)
        frames = np.array([f for f, _ in self.history], dtype=np.float64)
        centres = np.stack([c for _, c in self.history])
        frames -= frames.mean()
        return frames @ (centres - centres.mean(axis=0)) / (frames @ frames)

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0


def optimal_assignment() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """scipy's ``linear_sum_assignment``, or an ``ImportError`` naming the extra to install. scipy comes
    with the ``video`` extra, which the function images leave out, so it is imported by a tracker rather
    than by this module: the options and the flags made from them read without it, and a tool calls this
    to learn before any model loads that it can track."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:
        raise ImportError(f"tracking needs scipy ({exc}); install it with {install_hint('video')}") from exc
    return linear_sum_assignment


class PoseTracker:
    """Frame-to-frame association of poses (see the module docstring for the design).

    ``sigmas`` are the preset's OKS sigmas, one per keypoint (:func:`alphapose.pose.skeletons.oks_sigmas`);
    None tracks by box IoU alone. Feed each frame's poses to :meth:`update` in order and read the
    frames it hands back; :meth:`finish` hands back the last ones.
    """

    def __init__(self, options: TrackerOptions | None = None, sigmas: Sequence[float] | None = None) -> None:
        self.options = options or TrackerOptions()
        self.sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64)
        if self.sigmas is not None and (self.sigmas.ndim != 1 or not (self.sigmas > 0).all()):
            raise ValueError(f"sigmas must be one positive number per keypoint, got {sigmas!r}")
        self._assign = optimal_assignment()  # before the first frame: a missing scipy stops nothing midway
        self.reset()

    def reset(self) -> None:
        """Forget every track and unsettled frame and count identities from 1 again (a new video)."""
        self._tracks: list[_Track] = []
        self._frame = -1
        self._next_id = 1
        # Frames not yet handed back: (handle, poses, the track of each pose or None).
        self._pending: deque[tuple[Any, list[Pose], list[_Track | None]]] = deque()

    @property
    def active_ids(self) -> list[int]:
        """The identities of the confirmed tracks that may still be continued, oldest first."""
        return sorted(track.track_id for track in self._tracks if track.confirmed)

    def update(self, poses: Sequence[Pose], frame: Any | None = None) -> list[TrackedFrame]:
        """Track the next frame's poses; the frames settled by it, oldest first (often just this one,
        none while a new track is tentative). ``frame`` is handed back with them (default: its index)."""
        self._frame += 1
        handle = self._frame if frame is None else frame
        poses = list(poses)
        self._pending.append((handle, poses, self._associate(poses)))
        return self._settled()

    def finish(self) -> list[TrackedFrame]:
        """The frames still held at the end of a video, without the tracks that never confirmed."""
        for track in self._tracks:
            track.ended = not track.confirmed
        self._tracks = [t for t in self._tracks if t.confirmed]
        return self._settled()

    def track(
        self, frames: Iterable[tuple[Any, Sequence[Pose]]], *, threshold: float | None = None
    ) -> Iterator[TrackedFrame]:
        """Every frame of ``(handle, poses)`` pairs, tracked and settled, in order; then :meth:`finish`.
        With a ``threshold`` each frame keeps the persons whose box score is at least it
        (:meth:`TrackedFrame.above`): the tracker sees every pose, the threshold filters after it."""

        def kept(settled: list[TrackedFrame]) -> list[TrackedFrame]:
            return settled if threshold is None else [tracked.above(threshold) for tracked in settled]

        for handle, poses in frames:
            yield from kept(self.update(poses, handle))
        yield from kept(self.finish())

    # --- association ---------------------------------------------------------------------------------

    def _associate(self, poses: list[Pose]) -> list[_Track | None]:
        """The track each pose continues or starts (None: none), after moving every track on a frame."""
        options = self.options
        boxes = np.array([p.box for p in poses], dtype=np.float64).reshape(-1, 4)
        scores = np.array([p.box_score for p in poses], dtype=np.float64)
        keypoints = [np.asarray(p.keypoints, dtype=np.float64) for p in poses]
        visible = [np.asarray(p.keypoint_scores) >= options.keypoint_threshold for p in poses]
        if self.sigmas is not None:
            for kp in keypoints:
                if len(kp) != len(self.sigmas):
                    raise ValueError(
                        f"a pose has {len(kp)} keypoints but there are {len(self.sigmas)} sigmas"
                    )
            if poses:  # one array each, for every round to take its candidates from
                keypoints, visible = np.stack(keypoints), np.stack(visible)
        self._predict()

        owners: list[_Track | None] = [None] * len(poses)
        high = [d for d in range(len(poses)) if scores[d] >= options.high_score]
        low = [d for d in range(len(poses)) if options.low_score <= scores[d] < options.high_score]
        detections = (boxes, keypoints, visible)

        def assign(tracks: list[_Track], candidates: list[int], bound: float) -> list[_Track]:
            """Match ``tracks`` to the free poses of ``candidates``; the tracks left unmatched."""
            free = [d for d in candidates if owners[d] is None]
            matched = self._match(tracks, free, detections, bound)
            for track, d in matched.items():
                owners[d] = track
            return [t for t in tracks if t not in matched]

        confirmed = [t for t in self._tracks if t.confirmed]
        if options.follow_camera:
            self._follow_camera(confirmed, boxes[high])
        left = assign(confirmed, high, options.min_similarity)
        assign(left, low, options.low_similarity)
        assign([t for t in self._tracks if not t.confirmed], high, options.min_similarity)

        matched = [d for d, track in enumerate(owners) if track is not None]
        self._correct([owners[d] for d in matched], _xyxy_to_state(boxes[matched]))
        for d in matched:
            self._observe(owners[d], boxes[d], keypoints[d], visible[d])
        for d in high:
            if owners[d] is None and scores[d] >= options.start_score and self._starts(poses[d]):
                owners[d] = self._start(boxes[d], keypoints[d], visible[d])
        self._retire()
        return owners

    def _match(
        self,
        tracks: list[_Track],
        candidates: list[int],
        detections: tuple[np.ndarray, Sequence[np.ndarray], Sequence[np.ndarray]],
        bound: float,
    ) -> dict[_Track, int]:
        """The optimal assignment of ``tracks`` (their predicted boxes) to the poses ``candidates``:
        pairs at least ``bound`` similar, ``lost_discount`` of it for a track not seen last frame."""
        if not tracks or not candidates:
            return {}
        boxes, keypoints, visible = detections
        track_boxes = _state_to_xyxy(np.stack([t.mean[:4] for t in tracks]))
        similarity = box_iou(track_boxes, boxes[candidates])
        if self.sigmas is not None:
            oks, shared = pose_similarity(
                np.stack([t.box for t in tracks]),
                np.stack([t.keypoints for t in tracks]),
                np.stack([t.visible for t in tracks]),
                boxes[candidates],
                np.asarray(keypoints)[candidates],
                np.asarray(visible)[candidates],
                self.sigmas,
            )
            pose_share = (1 - self.options.iou_weight) * shared / len(self.sigmas)
            similarity = similarity * (1 - pose_share * (1 - oks))
        lost = np.array([t.last_frame < self._frame - 1 for t in tracks])
        similarity[similarity < np.where(lost, bound * self.options.lost_discount, bound)[:, None]] = 0.0
        rows, cols = self._assign(similarity, maximize=True)
        return {tracks[r]: candidates[c] for r, c in zip(rows, cols, strict=True) if similarity[r, c] > 0.0}

    # --- life of the tracks ----------------------------------------------------------------------------

    def _follow_camera(self, confirmed: list[_Track], boxes: np.ndarray) -> None:
        """Move every prediction by the camera's motion: the median shift between the predictions of
        the tracks seen last frame and the confident poses' ``boxes`` that clearly overlap them, where
        at least ``_CAMERA_MATCHES`` agree beyond ``_CAMERA_SIGNIFICANCE`` standard errors (persons
        walking their own ways leave it near 0). A pan or a shake moves every person at once."""
        seen = [t for t in confirmed if t.last_frame == self._frame - 1]
        if len(seen) < _CAMERA_MATCHES or len(boxes) < _CAMERA_MATCHES:
            return
        predicted = np.stack([t.mean[:4] for t in seen])
        iou = box_iou(_state_to_xyxy(predicted), boxes)
        rows, cols = self._assign(iou, maximize=True)
        clear = iou[rows, cols] >= _CAMERA_SIMILARITY
        if clear.sum() < _CAMERA_MATCHES:
            return
        shifts = _xyxy_to_state(boxes[cols[clear]])[:, :2] - predicted[rows[clear], :2]
        shift = np.median(shifts, axis=0)
        error = shifts.std(axis=0) / np.sqrt(len(shifts))
        shift = np.where(np.abs(shift) > _CAMERA_SIGNIFICANCE * error, shift, 0.0)
        if not shift.any():
            return
        for track in self._tracks:
            track.mean = track.mean.copy()
            track.mean[:2] += shift

    def _starts(self, pose: Pose) -> bool:
        """Whether a confident unmatched pose may start a track: the mean of its best
        ``_START_KEYPOINTS`` keypoint scores (COCO's body; a whole-body pose with face and hands
        unseen still starts) is at least ``start_keypoint_score``. A false detection's keypoints
        score low."""
        best = np.sort(np.asarray(pose.keypoint_scores, dtype=np.float64))[-_START_KEYPOINTS:]
        return bool(best.mean() >= self.options.start_keypoint_score)

    def _predict(self) -> None:
        """Move every track on one frame: the filter's prediction for a track seen last frame; for one
        hidden longer, its last observation moved on by its trend, slowed by ``motion_damping`` each
        missed frame, at its last observed size."""
        if not self._tracks:
            return
        means = np.stack([t.mean for t in self._tracks])
        covariances = np.stack([t.covariance for t in self._tracks])
        heights = means[:, 3]
        std = np.stack([*(_POSITION_NOISE * heights,) * 4, *(_VELOCITY_NOISE * heights,) * 4], axis=-1)
        means = means @ _TRANSITION.T
        means[:, 2:4] = np.maximum(means[:, 2:4], 1.0)
        covariances = _TRANSITION @ covariances @ _TRANSITION.T + np.einsum("ni,ij->nij", std**2, np.eye(8))
        damping = self.options.motion_damping
        for track, mean, covariance in zip(self._tracks, means, covariances, strict=True):
            gap = self._frame - track.last_frame
            if gap > 1:
                kept = damping**gap
                travelled = gap if damping == 1.0 else (1 - kept) / (1 - damping)
                trend = track.trend()
                mean = np.concatenate(
                    [_xyxy_to_state(track.box) + np.r_[trend * travelled, 0, 0], trend * kept, (0, 0)]
                )
            track.mean, track.covariance = mean, covariance

    def _correct(self, tracks: list[_Track], measured: np.ndarray) -> None:
        """The filter's correction of every track matched this frame by its pose's (cx, cy, w, h) at
        once; a track found after a gap is re-anchored on the pose instead (OC-SORT)."""
        steady, rows = [], []
        for row, (track, state) in enumerate(zip(tracks, measured, strict=True)):
            track.history.append((self._frame, state[:2]))
            if self._frame - track.last_frame > 1:
                track.mean = np.concatenate([state, track.trend(), np.zeros(2)])
                track.covariance = _initial_covariance(state[3:4])[0]
            else:
                steady.append(track)
                rows.append(row)
        if not steady:
            return
        means = np.stack([t.mean for t in steady])
        covariances = np.stack([t.covariance for t in steady])
        noise = (_POSITION_NOISE * means[:, 3]) ** 2
        projected = covariances[:, :4, :4] + noise[:, None, None] * np.eye(4)
        gains = np.linalg.solve(projected, covariances[:, :4]).transpose(0, 2, 1)  # (N, 8, 4)
        means = means + np.einsum("nij,nj->ni", gains, measured[rows] - means[:, :4])
        covariances = covariances - gains @ covariances[:, :4]
        for track, mean, covariance in zip(steady, means, covariances, strict=True):
            track.mean, track.covariance = mean, covariance

    def _observe(self, track: _Track, box: np.ndarray, keypoints: np.ndarray, visible: np.ndarray) -> None:
        """Take the pose as the track's last observation (after :meth:`_correct`)."""
        # Keypoints not seen now keep their last position, carried with the box.
        centre_then, centre_now = (track.box[:2] + track.box[2:]) / 2, (box[:2] + box[2:]) / 2
        track.keypoints = np.where(visible[:, None], keypoints, track.keypoints - centre_then + centre_now)
        track.visible = visible | track.visible
        track.box = box
        track.last_frame = self._frame
        track.hits += 1
        if not track.confirmed and track.hits >= self.options.min_hits:
            self._confirm(track)

    def _start(self, box: np.ndarray, keypoints: np.ndarray, visible: np.ndarray) -> _Track:
        track = _Track(box, keypoints, visible, self._frame)
        self._tracks.append(track)
        if self.options.min_hits <= 1:
            self._confirm(track)
        return track

    def _confirm(self, track: _Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1

    def _retire(self) -> None:
        """End the tracks missed too long: a tentative one after ``tentative_misses`` frames."""
        kept = []
        for track in self._tracks:
            missed = self._frame - track.last_frame
            track.ended = missed > (
                self.options.max_age if track.confirmed else self.options.tentative_misses
            )
            if not track.ended:
                kept.append(track)
        self._tracks = kept

    def _settled(self) -> list[TrackedFrame]:
        """Hand back the oldest frames whose tracks are all confirmed or ended."""
        settled = []
        while self._pending:
            handle, poses, owners = self._pending[0]
            if any(t is not None and not t.confirmed and not t.ended for t in owners):
                break
            self._pending.popleft()
            persons = [
                (t.track_id, p) for t, p in zip(owners, poses, strict=True) if t is not None and t.confirmed
            ]
            settled.append(TrackedFrame(handle, persons))
        return settled


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
    it; and how many keypoints each pair has visible in both (its OKS is 0 where none)."""
    squared = ((keypoints_a[:, None] - keypoints_b[None]) ** 2).sum(-1)  # (A, B, K)
    scale = (areas_a[:, None] + areas_b[None]) / 2 + np.spacing(1)
    exponent = squared / ((2 * sigmas) ** 2) / scale[..., None] / 2
    both = visible_a[:, None] & visible_b[None]
    shared = both.sum(-1)
    total = (np.exp(-exponent) * both).sum(-1)
    return np.divide(total, shared, out=np.zeros_like(total), where=shared > 0), shared


def pose_similarity(
    boxes_a: np.ndarray,
    keypoints_a: np.ndarray,
    visible_a: np.ndarray,
    boxes_b: np.ndarray,
    keypoints_b: np.ndarray,
    visible_b: np.ndarray,
    sigmas: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """OKS of every pair (A, B) once each pose is moved to its box's centre and scaled to unit box
    height: how alike the two bodies are, whatever the boxes' positions, which IoU already weighs. A
    camera shake or a prediction some pixels off then costs IoU alone, not both. Returns the OKS and
    the count of keypoints visible in both, as :func:`object_keypoint_similarity`."""

    def normalised(boxes: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizes = np.maximum(_sizes(boxes), 1e-6)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        return (keypoints - centres[:, None]) / sizes[:, 1:, None], sizes[:, 0] / sizes[:, 1]

    shapes_a, areas_a = normalised(boxes_a, keypoints_a)
    shapes_b, areas_b = normalised(boxes_b, keypoints_b)
    return object_keypoint_similarity(
        shapes_a, visible_a, areas_a, shapes_b, visible_b, areas_b, np.asarray(sigmas, dtype=np.float64)
    )


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=-1)


def _sizes(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)


def track_video(
    pipeline: PosePipeline,
    frames: Iterable[np.ndarray],
    tracker: PoseTracker,
    frame_batch: int | None = None,
) -> Iterator[TrackedFrame]:
    """``(frame index, [(identity, pose), ...])`` for each RGB frame, in order, as they are settled.

    Frames are read, estimated and tracked ``frame_batch`` at a time (default: the device's,
    :meth:`PosePipeline.frames`); the tracker holds back only the few frames whose new tracks are still
    tentative, so memory does not grow with the video's length.
    """
    yield from tracker.track(enumerate(pipeline.frames(frames, frame_batch)))
