"""Tracked poses to CVAT skeleton tracks with thinned keyframes, and what CVAT shows between them.

Input: per frame, the tracked persons, ``(frame, [(track_id, pose), ...])`` in increasing frame order
(frames are the task's frame numbers, 0 to size - 1; a frame missing from the input, such as a deleted
one, is neither checked nor used). Output: one :class:`SkeletonTrack` per track id, whose keyframes
hold every point of the skeleton; what is uploaded of each point, and what CVAT keeps, is
:meth:`SkeletonTrack.point_keyframes`: the point on every keyframe from the first where it is visible,
so that an annotator who corrects a keyframe finds there every point the person has shown so far.

CVAT's rules this module relies on, and where they are (cvat-ai/cvat):

* Between two keyframes a point moves linearly with the frame number, and takes ``outside`` and
  ``occluded`` from the left keyframe: server ``cvat/apps/dataset_manager/annotation.py``,
  ``TrackManager.get_interpolated_shapes`` (``simple_interpolation``, reached through
  ``points_interpolation`` for a one-point ``points`` shape); browser
  ``cvat-core/src/annotations-objects/points-track.ts``, ``PointsTrack.interpolatePosition``.
* After a track's last keyframe the shape stays where it is until the end of the task unless that
  keyframe is ``outside`` (``get_interpolated_shapes``, ``propagate``; ``Track.getPosition`` in
  ``cvat-core/src/annotations-objects/track.ts``), and after an ``outside`` keyframe nothing is shown
  until the next keyframe. So a person who leaves gets an ``outside`` keyframe on the first frame it is
  gone, and a point that drops below the keypoint threshold gets one on the first frame it is below.
  Before its first keyframe a track is not shown (``Track.getPosition``: only a right keyframe means
  outside).
* A skeleton track's elements are tracks of their own, interpolated as above; the skeleton is shown on
  a frame where its own shapes say it is inside (``TrackManager.to_shapes``, elements with
  ``include_outside=True``) and, in the browser, the skeleton is outside where every element is
  (``SkeletonTrack.get`` in ``cvat-core/src/annotations-objects/skeleton-track.ts``). Both the
  skeleton's shapes and every element's shapes are therefore written, with the same keyframes.
* What CVAT keeps of an uploaded element track: it drops the element's leading ``outside`` shapes
  (``AnnotationIR._slice_track``, ``filter_track_shapes``, run on each job's part of the upload), so an
  element track of a point that is never visible keeps no shape and the point is not stored; then,
  since an element track starts on its skeleton's first frame, it adds back one ``outside`` shape
  there, a copy of the element's first remaining shape (``create_tracks`` in
  ``JobAnnotation._save_tracks_to_db``, through ``_sync_frames`` and ``_correct_frame_of_tracked_shapes``
  / ``_add_missing_shape``, ``cvat/apps/dataset_manager/task.py``). The upload therefore leaves out what
  CVAT would drop: a point's element track starts at its first visible keyframe (CVAT puts the
  ``outside`` shape before it), and a point never visible in a track has no element track.

Keyframe thinning keeps a frame only where the linear interpolation between the kept keyframes would
put a visible point more than ``tolerance`` pixels from where the model put it. A frame where a
point's visibility changes is always a keyframe; within a stretch of constant visibility the frames
are kept greedily: from a keyframe, the next one is the last frame up to which every frame in between
is within the tolerance. An ``outside`` point keeps its last visible position (where it has not been
visible yet, where the model put it on the track's first frame), so that interpolating towards a
point that disappears is the same as holding it. Keypoint visibility follows the function's rule
(:mod:`alphapose.cvat.formats`): a finite point scoring at least its keypoint threshold; a person
with no visible point on a frame is absent from it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from alphapose.cvat.formats import per_keypoint

if TYPE_CHECKING:
    from alphapose.structures import Pose

TrackedFrame = tuple[int, Sequence[tuple[int, "Pose"]]]

DEFAULT_TOLERANCE = 2.0  # pixels


@dataclass(frozen=True)
class Keyframe:
    """One keyframe of a skeleton track: every point's position and ``outside`` flag on ``frame``.

    ``outside`` is the skeleton's own flag: true on the first frame after the person left, where every
    point is outside as well.
    """

    frame: int
    outside: bool
    points: tuple[tuple[float, float], ...]
    points_outside: tuple[bool, ...]


@dataclass(frozen=True)
class PointKeyframe:
    """One shape of a point's element track: where the point is on ``frame`` and whether it is outside."""

    frame: int
    point: tuple[float, float]
    outside: bool


@dataclass(frozen=True)
class SkeletonTrack:
    """One person's track: the tracker's id and the keyframes in frame order (the first is inside)."""

    track_id: int
    keyframes: tuple[Keyframe, ...]

    @property
    def frame(self) -> int:
        """The track's first frame, as CVAT wants it on the track and on each element track."""
        return self.keyframes[0].frame

    def point_keyframes(self, index: int) -> tuple[PointKeyframe, ...]:
        """The element track of point ``index`` as uploaded and as CVAT keeps it (module docstring):
        the point on every keyframe from the first where it is visible; empty for a point never visible
        in the track. CVAT adds one ``outside`` shape on the track's first frame before a later start."""
        first = next((i for i, k in enumerate(self.keyframes) if not k.points_outside[index]), None)
        if first is None:
            return ()
        return tuple(
            PointKeyframe(k.frame, k.points[index], k.points_outside[index]) for k in self.keyframes[first:]
        )


@dataclass
class _Observed:
    """A track's frames where the person is present, with every point as stored and seen."""

    frames: list[int]
    points: list[np.ndarray]  # (K, 2) float64 per frame: visible points as seen, others held
    visible: list[np.ndarray]  # (K,) bool per frame


def build_tracks(
    frames: Iterable[TrackedFrame],
    num_keypoints: int,
    *,
    keypoint_threshold: float | Sequence[float],
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[SkeletonTrack]:
    """The CVAT skeleton tracks of tracked poses, ordered by first frame then track id.

    ``keypoint_threshold`` is one value or one per keypoint (as :func:`alphapose.cvat.formats.
    cvat_skeletons` takes it); ``tolerance`` is in pixels, 0 keeps every frame where a point moves.
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"the keyframe tolerance must be a finite number of pixels >= 0, not {tolerance}")
    thresholds = np.asarray(per_keypoint(keypoint_threshold, num_keypoints))
    processed: list[int] = []
    observed: dict[int, _Observed] = {}
    for frame, persons in frames:
        if processed and frame <= processed[-1]:
            raise ValueError(f"frames must come in increasing order: {frame} after {processed[-1]}")
        processed.append(frame)
        seen: set[int] = set()
        for track_id, pose in persons:
            if track_id in seen:
                raise ValueError(f"track id {track_id} is given twice on frame {frame}")
            seen.add(track_id)
            _observe(observed, track_id, frame, pose, thresholds)
    following = {frame: after for frame, after in itertools.pairwise(processed)}
    tracks = [
        SkeletonTrack(track_id, tuple(_keyframes(track, following, tolerance)))
        for track_id, track in observed.items()
    ]
    return sorted(tracks, key=lambda track: (track.frame, track.track_id))


def _observe(
    observed: dict[int, _Observed], track_id: int, frame: int, pose: Pose, thresholds: np.ndarray
) -> None:
    """Record one person on one frame, unless no point of it is visible there."""
    points = np.asarray(pose.keypoints, dtype=np.float64)
    scores = np.asarray(pose.keypoint_scores, dtype=np.float64)
    if points.shape != (len(thresholds), 2) or scores.shape != (len(thresholds),):
        raise ValueError(
            f"track {track_id}, frame {frame}: a pose has {len(points)} keypoints, expected {len(thresholds)}"
        )
    finite = np.isfinite(points).all(axis=1) & np.isfinite(scores)
    visible = finite & (scores >= thresholds)
    if not visible.any():
        return
    track = observed.get(track_id)
    if track is None:
        # A point never visible so far in the track is stored where the model put it (the box centre
        # where that is not finite, as the function's answer does).
        x1, y1, x2, y2 = (float(v) for v in pose.box)
        stored = np.where(finite[:, None], points, [(x1 + x2) / 2, (y1 + y2) / 2])
        observed[track_id] = _Observed([frame], [stored], [visible])
        return
    stored = np.where(visible[:, None], points, track.points[-1])
    track.frames.append(frame)
    track.points.append(stored)
    track.visible.append(visible)


def _keyframes(track: _Observed, following: dict[int, int], tolerance: float) -> list[Keyframe]:
    """Keyframes of one track: each stretch of frames with the same visible points, thinned; an
    ``outside`` keyframe on the first processed frame after each stretch of presence."""
    keyframes: list[Keyframe] = []
    count = len(track.frames)
    start = 0
    while start < count:
        # a stretch: consecutive processed frames where the person is present, with the same points visible
        stop = start + 1
        while (
            stop < count
            and following.get(track.frames[stop - 1]) == track.frames[stop]
            and np.array_equal(track.visible[stop], track.visible[start])
        ):
            stop += 1
        frames = track.frames[start:stop]
        points = np.stack(track.points[start:stop])
        visible = track.visible[start]
        anchor: tuple[int, np.ndarray] | None = None
        if stop < count and following.get(frames[-1]) == track.frames[stop]:
            anchor = (track.frames[stop], track.points[stop])
        elif frames[-1] in following:
            anchor = (following[frames[-1]], points[-1])
        kept = _thin(frames, points, visible, anchor, tolerance)
        keyframes += [_keyframe(frames[i], points[i], visible) for i in kept]
        if anchor is not None and not (stop < count and track.frames[stop] == anchor[0]):
            keyframes.append(_keyframe(anchor[0], anchor[1], np.zeros_like(visible), outside=True))
        start = stop
    return keyframes


def _thin(
    frames: Sequence[int],
    points: np.ndarray,
    visible: np.ndarray,
    anchor: tuple[int, np.ndarray] | None,
    tolerance: float,
) -> list[int]:
    """Indexes of the frames of one stretch to keep (the first always; the last where nothing follows).

    ``anchor`` is the next keyframe after the stretch (its frame and stored points), which the last
    kept frame interpolates towards; None at the end of the task, where CVAT holds the last keyframe.
    """
    times = np.asarray(frames, dtype=np.float64)
    values = points[:, visible]  # (n, V, 2): only visible points are checked
    end = len(frames) - 1
    if anchor is not None:
        times = np.append(times, float(anchor[0]))
        values = np.concatenate([values, anchor[1][None, visible]])
        end = len(frames)
    limit = tolerance * tolerance
    kept = [0]
    left = 0
    while left < end:
        right = left + 1
        while right < end and _within(times, values, left, right + 1, limit):
            right += 1
        kept.append(right)
        left = right
    return [i for i in kept if i < len(frames)]


def _within(times: np.ndarray, values: np.ndarray, left: int, right: int, limit: float) -> bool:
    """Whether interpolating from keyframe ``left`` to keyframe ``right`` stays within the tolerance
    (squared, ``limit``) at every frame in between."""
    inner = slice(left + 1, right)
    offset = (times[inner] - times[left]) / (times[right] - times[left])
    guess = values[left] + (values[right] - values[left]) * offset[:, None, None]
    return bool((((guess - values[inner]) ** 2).sum(axis=-1) <= limit).all())


def _keyframe(frame: int, points: np.ndarray, visible: np.ndarray, outside: bool = False) -> Keyframe:
    return Keyframe(
        frame=int(frame),
        outside=outside,
        points=tuple((float(x), float(y)) for x, y in points),
        points_outside=tuple(not v for v in visible.tolist()),
    )


def cut_track(track: SkeletonTrack, index: int) -> tuple[SkeletonTrack, SkeletonTrack]:
    """``track`` as two tracks CVAT shows as it shows ``track``, on the same frames: its keyframes from
    ``index`` on, and those before it ended by an ``outside`` keyframe on the frame of keyframe ``index``
    with that keyframe's points (CVAT moves the points towards them from the left keyframe, as in
    ``track``, and the first track stops where the second starts); no keyframe is added where the
    person has left just before (an ``outside`` keyframe there already ends the first). For an upload
    too large for one request. ``index`` must be a keyframe where the person is present, as a track
    starts (:func:`can_cut`)."""
    if not can_cut(track, index):
        raise ValueError(f"keyframe {index} of track {track.track_id} cannot start a track")
    keyframes, rest = track.keyframes[:index], track.keyframes[index:]
    if not keyframes[-1].outside:
        start = rest[0]
        keyframes += (Keyframe(start.frame, True, start.points, (True,) * len(start.points)),)
    return SkeletonTrack(track.track_id, keyframes), SkeletonTrack(track.track_id, rest)


def can_cut(track: SkeletonTrack, index: int) -> bool:
    """Whether :func:`cut_track` can cut ``track`` at keyframe ``index``: one after the first, where the
    person is present."""
    return 0 < index < len(track.keyframes) and not track.keyframes[index].outside


def cvat_view(track: SkeletonTrack, frame: int) -> tuple[np.ndarray, np.ndarray] | None:
    """What CVAT shows of ``track`` on ``frame``: ``(points (K, 2), visible (K,))``, or None where the
    skeleton is not shown. It follows the rules in the module docstring: the skeleton from its own
    keyframes, each point from what CVAT keeps of its element track, interpolated between its shapes
    with the left shape's ``outside``; a point CVAT keeps no element track of is NaN and not visible."""
    frames = [keyframe.frame for keyframe in track.keyframes]
    index = int(np.searchsorted(frames, frame, side="right")) - 1
    if index < 0 or track.keyframes[index].outside:
        return None  # before the first keyframe, or after an outside one up to the next keyframe
    count = len(track.keyframes[0].points)
    points = np.full((count, 2), np.nan)
    visible = np.zeros(count, dtype=bool)
    for point in range(count):
        shapes = track.point_keyframes(point)
        if not shapes:
            continue
        left = int(np.searchsorted([shape.frame for shape in shapes], frame, side="right")) - 1
        if left < 0:  # CVAT's added outside shape on the track's first frame, a copy of the first one
            points[point] = shapes[0].point
            continue
        position = np.asarray(shapes[left].point, dtype=np.float64)
        if frame != shapes[left].frame and left + 1 < len(shapes):
            right = shapes[left + 1]
            offset = (frame - shapes[left].frame) / (right.frame - shapes[left].frame)
            position = position + (np.asarray(right.point, dtype=np.float64) - position) * offset
        points[point] = position
        visible[point] = not shapes[left].outside
    if not visible.any():
        return None  # the server drops a skeleton whose elements are all outside
    return points, visible
