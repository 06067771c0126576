"""Skeleton tracks from tracked poses (alphapose.cvat.skeleton_tracks) and their CVAT for video 1.1 file.

Every check goes through what CVAT would show (tests/helpers/cvat_track_view.py, written from CVAT's
interpolation code): the kept keyframes, re-interpolated CVAT's way, must put every visible point
within the tolerance of where the model put it, on every frame, and show exactly the points above
the keypoint threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from cvat_track_view import kept, load_video_xml, shown

from alphapose.cvat.skeleton_tracks import SkeletonTrack, build_tracks, can_cut, cut_track, cvat_view
from alphapose.cvat.video_xml import TaskFrames, video_xml
from alphapose.structures import Pose
from tools.annotate_task import TaskLabels, track_request

K = 5  # keypoints of the synthetic skeletons
THRESHOLD = 0.4
NAMES = tuple(f"p{i}" for i in range(K))
OFFSETS = np.array([[0, -40], [-10, -20], [10, -20], [-8, 30], [8, 30]], dtype=float)

Trajectory = Callable[[int], np.ndarray]  # frame -> (K, 2) points


def pose(points: np.ndarray, scores: Sequence[float] | None = None) -> Pose:
    points = np.asarray(points, dtype=np.float32)
    low, high = points.min(axis=0), points.max(axis=0)
    return Pose(
        box=np.array([*low, *high], dtype=np.float32),
        box_score=0.9,
        keypoints=points,
        keypoint_scores=np.asarray(scores if scores is not None else [0.9] * K, dtype=np.float32),
        score=1.0,
    )


def track_json(track: SkeletonTrack) -> dict:
    """A track as annotate-task uploads it (its request models as JSON), each point labelled by name."""
    request = track_request(track, TaskLabels(person=K, points=tuple(range(K))))
    uploaded = json.loads(json.dumps(request.to_dict(), default=str))  # ShapeType -> its value
    for element in uploaded["elements"]:
        element["label"] = NAMES[element.pop("label_id")]
    return uploaded


def check_shown(
    track: SkeletonTrack,
    truth: dict[int, tuple[np.ndarray, np.ndarray]],
    frames: Sequence[int],
    tolerance: float,
    end_frame: int,
) -> None:
    """On every processed frame CVAT shows the person exactly where ``truth`` has it (points, visible),
    within ``tolerance`` pixels, and nothing where it has none."""
    view = shown(track_json(track), end_frame, NAMES)
    for frame in frames:
        if frame not in truth:
            assert frame not in view, f"frame {frame}: shown, but the person is not there"
            assert cvat_view(track, frame) is None
            continue
        points, visible = truth[frame]
        assert frame in view, f"frame {frame}: the person is there but not shown"
        got, got_visible = view[frame]
        np.testing.assert_array_equal(got_visible, visible, err_msg=f"frame {frame}")
        error = np.linalg.norm(got - points, axis=1)[visible].max()
        assert error <= tolerance + 1e-4, f"frame {frame}: a point is {error:.3f} px off"
        library = cvat_view(track, frame)  # the library's own view agrees with CVAT's code
        assert library is not None
        np.testing.assert_allclose(library[0][visible], got[visible], atol=1e-9)
        np.testing.assert_array_equal(library[1], got_visible)


def one_track(
    trajectory: Trajectory,
    frames: Sequence[int],
    tolerance: float,
    present: Callable[[int], bool] = lambda frame: True,
    scores: Callable[[int], Sequence[float]] = lambda frame: [0.9] * K,
) -> tuple[SkeletonTrack, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Build the track of one person (id 7) and the truth: per frame where it is present, its points
    and which of them score at least the threshold."""
    tracked = [(f, [(7, pose(trajectory(f), scores(f)))] if present(f) else []) for f in frames]
    (track,) = build_tracks(tracked, K, keypoint_threshold=THRESHOLD, tolerance=tolerance)
    assert track.track_id == 7
    truth = {}
    for f in frames:
        visible = np.asarray(scores(f)) >= THRESHOLD
        if present(f) and visible.any():
            truth[f] = (np.asarray(trajectory(f), dtype=np.float32).astype(float), visible)
    return track, truth


def walking(frame: int) -> np.ndarray:
    """A person walking right at 3 px per frame, feet and hands swinging (period 24 frames)."""
    swing = 12 * np.sin(2 * np.pi * frame / 24)
    points = OFFSETS + np.array([100 + 3 * frame, 200 + 2 * np.sin(2 * np.pi * frame / 12)])
    points[3:, 0] += [swing, -swing]
    points[1:3, 1] += [swing / 3, -swing / 3]
    return points


def corner(frame: int) -> np.ndarray:
    """Right at 4 px per frame until frame 30, then down at 4 px per frame."""
    x = 100 + 4 * min(frame, 30)
    y = 100 + 4 * max(frame - 30, 0)
    return OFFSETS + np.array([x, y])


@pytest.mark.parametrize(("tolerance", "at_most"), [(0.5, 60), (2.0, 30), (5.0, 15)])
def test_thinned_walk_reinterpolates_within_the_tolerance_on_every_frame(
    tolerance: float, at_most: int
) -> None:
    frames = range(120)
    track, truth = one_track(walking, frames, tolerance)
    check_shown(track, truth, frames, tolerance, end_frame=120)
    kept = [k.frame for k in track.keyframes]
    assert kept[0] == 0 and kept[-1] == 119  # the end of the task: CVAT holds the last keyframe
    assert len(kept) <= at_most  # smooth motion: many frames are left to interpolation


def test_more_tolerance_fewer_keyframes() -> None:
    counts = [len(one_track(walking, range(120), tolerance)[0].keyframes) for tolerance in (0.5, 2.0, 5.0)]
    assert counts[0] > counts[1] > counts[2]


def test_a_corner_is_a_keyframe_and_straight_lines_are_not() -> None:
    track, truth = one_track(corner, range(60), tolerance=0.5)
    assert [k.frame for k in track.keyframes] == [0, 30, 59]
    check_shown(track, truth, range(60), 0.5, end_frame=60)


def circling(frame: int) -> np.ndarray:
    """Round a circle of 60 px, a tenth of a radian per frame: no three frames in a line."""
    return OFFSETS + np.array([300 + 60 * np.cos(frame / 10), 300 + 60 * np.sin(frame / 10)])


def test_zero_tolerance_keeps_every_frame_of_a_curve() -> None:
    track, truth = one_track(circling, range(30), tolerance=0.0)
    assert [k.frame for k in track.keyframes] == list(range(30))
    check_shown(track, truth, range(30), 1e-4, end_frame=30)


def test_a_person_who_leaves_gets_an_outside_keyframe_on_the_first_frame_it_is_gone() -> None:
    track, truth = one_track(corner, range(40), 0.5, present=lambda f: f < 20)
    last = track.keyframes[-1]
    assert last.frame == 20 and last.outside and all(last.points_outside)
    assert [k.frame for k in track.keyframes if not k.outside][-1] <= 19
    check_shown(track, truth, range(40), 0.5, end_frame=40)


def test_a_person_hidden_for_a_few_frames_is_outside_there_and_back_after() -> None:
    track, truth = one_track(walking, range(40), 1.0, present=lambda f: not 10 <= f < 15)
    by_frame = {k.frame: k for k in track.keyframes}
    assert by_frame[10].outside and 15 in by_frame and not by_frame[15].outside
    assert not any(10 < f < 15 for f in by_frame)
    check_shown(track, truth, range(40), 1.0, end_frame=40)


def test_a_point_below_the_threshold_is_outside_from_the_first_frame_below_to_the_first_above() -> None:
    def scores(frame: int) -> list[float]:
        return [0.9, 0.9, 0.9, 0.1 if 10 <= frame < 15 else 0.9, 0.9]

    track, truth = one_track(corner, range(30), 0.5, scores=scores)
    by_frame = {k.frame: k for k in track.keyframes}
    assert by_frame[10].points_outside == (False, False, False, True, False) and not by_frame[10].outside
    assert by_frame[15].points_outside == (False,) * K
    check_shown(track, truth, range(30), 0.5, end_frame=30)


def test_a_frame_with_every_point_below_the_threshold_counts_as_absent() -> None:
    track, truth = one_track(corner, range(20), 0.5, scores=lambda f: [0.1] * K if f == 8 else [0.9] * K)
    by_frame = {k.frame: k for k in track.keyframes}
    assert by_frame[8].outside and not by_frame[9].outside
    check_shown(track, truth, range(20), 0.5, end_frame=20)


def test_missing_frames_are_neither_checked_nor_used() -> None:
    """Frames the input skips (deleted task frames) are interpolated over, not an absence."""
    frames = [f for f in range(40) if f not in (10, 11, 25)]
    track, truth = one_track(corner, frames, 0.5)
    assert not any(k.outside for k in track.keyframes)
    assert [k.frame for k in track.keyframes] == [0, 30, 39]
    check_shown(track, truth, frames, 0.5, end_frame=40)


def test_seeded_random_scenes_show_every_point_right() -> None:
    """Several persons wandering, leaving, coming back, with points dropping below the threshold."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        frames = [f for f in range(80) if rng.random() > 0.05]
        persons = {}
        for track_id in (1, 2, 3):
            velocity = np.cumsum(rng.normal(0, 0.6, (80, 2)), axis=0) + rng.normal(0, 3, 2)
            centres = 300 + np.cumsum(velocity, axis=0)
            present = rng.random(80) > 0.1
            scores = np.where(rng.random((80, K)) > 0.15, 0.9, 0.2)
            persons[track_id] = (centres, present, scores)
        tracked = [
            (f, [(i, pose(OFFSETS + c[f], s[f])) for i, (c, p, s) in persons.items() if p[f]]) for f in frames
        ]
        tracks = build_tracks(tracked, K, keypoint_threshold=THRESHOLD, tolerance=1.5)
        for track in tracks:
            centres, present, scores = persons[track.track_id]
            truth = {
                f: (np.asarray(OFFSETS + centres[f], dtype=np.float32).astype(float), scores[f] >= THRESHOLD)
                for f in frames
                if present[f] and (scores[f] >= THRESHOLD).any()
            }
            check_shown(track, truth, frames, 1.5, end_frame=80)
        assert sorted(t.track_id for t in tracks) == [1, 2, 3]
        assert [t.frame for t in tracks] == sorted(t.frame for t in tracks)


def test_the_upload_is_what_cvat_keeps_of_it() -> None:
    """CVAT drops a point's leading outside shapes (a point seen late), and the whole point where it is
    never seen: none of that is uploaded, and what CVAT stores is the upload plus the one outside shape
    it puts on the track's first frame before a point seen late."""

    def scores(frame: int) -> list[float]:
        return [0.9, 0.9, 0.9, 0.9 if frame >= 10 else 0.1, 0.1]  # p3 seen from frame 10, p4 never

    track, truth = one_track(walking, range(30), 1.0, scores=scores)
    upload = track_json(track)
    assert [element["label"] for element in upload["elements"]] == list(NAMES[:4])
    assert all(not element["shapes"][0]["outside"] for element in upload["elements"])
    late = upload["elements"][3]
    assert late["frame"] == 0 and late["shapes"][0]["frame"] == 10
    stored = kept(upload)
    assert stored["elements"][:3] == upload["elements"][:3]
    added, *rest = stored["elements"][3]["shapes"]
    assert rest == late["shapes"]
    assert added == {**late["shapes"][0], "frame": 0, "outside": True}
    assert [k.point for k in track.point_keyframes(3)] == [tuple(s["points"]) for s in late["shapes"]]
    assert track.point_keyframes(4) == ()
    check_shown(track, truth, range(30), 1.0, end_frame=30)
    view = cvat_view(track, 5)
    assert view is not None and not view[1][3] and np.isnan(view[0][4]).all()


def test_a_track_cut_in_two_shows_as_the_whole_on_every_frame() -> None:
    """At every keyframe where the person is present, the two tracks of a cut show, between them, what
    the whole track shows (as CVAT keeps and interpolates them), each on its own frames: a person
    leaving and coming back, a point seen late and one dropping below the threshold."""

    def scores(frame: int) -> list[float]:
        return [0.9, 0.1 if 8 <= frame < 14 else 0.9, 0.9, 0.9 if frame >= 5 else 0.1, 0.1]

    track, _ = one_track(walking, range(40), 1.0, present=lambda f: not 20 <= f < 25, scores=scores)
    whole = shown(track_json(track), 40, NAMES)
    cuts = [i for i in range(len(track.keyframes) + 1) if can_cut(track, i)]
    assert len(cuts) >= 10 and any(track.keyframes[i - 1].outside for i in cuts)
    for index in cuts:
        first, second = cut_track(track, index)
        end = first.keyframes[-1]  # every point outside too: the browser shows a skeleton while one is in
        assert end.outside and all(end.points_outside) and second.keyframes == track.keyframes[index:]
        views = [shown(track_json(part), 40, NAMES) for part in (first, second)]
        assert not views[0].keys() & views[1].keys()
        assert views[0].keys() | views[1].keys() == whole.keys()
        for frame, (points, visible) in whole.items():
            got, got_visible = (views[0] if frame in views[0] else views[1])[frame]
            np.testing.assert_array_equal(got_visible, visible, err_msg=f"cut at {index}, frame {frame}")
            np.testing.assert_allclose(got[visible], points[visible], atol=1e-9)
    assert not can_cut(track, 0) and not can_cut(track, len(track.keyframes))
    gone = next(i for i, k in enumerate(track.keyframes) if k.outside)
    with pytest.raises(ValueError, match=f"keyframe {gone} of track 7 cannot start a track"):
        cut_track(track, gone)


def test_per_keypoint_thresholds() -> None:
    tracked = [(0, [(1, pose(corner(0), [0.5, 0.5, 0.5, 0.03, 0.03]))])]
    (track,) = build_tracks(tracked, K, keypoint_threshold=[0.4, 0.4, 0.6, 0.05, 0.02], tolerance=1.0)
    assert track.keyframes[0].points_outside == (False, False, True, True, False)


@pytest.mark.parametrize(
    ("tracked", "message"),
    [
        ([(3, []), (3, [])], "increasing order"),
        ([(0, [(1, pose(corner(0))), (1, pose(corner(1)))])], "track id 1 is given twice"),
        ([(0, [(1, pose(corner(0)[:4], [0.9] * 4))])], "4 keypoints, expected 5"),
    ],
)
def test_bad_input_is_refused(tracked: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_tracks(tracked, K, keypoint_threshold=THRESHOLD)


@pytest.mark.parametrize("tolerance", [-1.0, float("nan"), float("inf")])
def test_bad_tolerance_is_refused(tolerance: float) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        build_tracks([], K, keypoint_threshold=THRESHOLD, tolerance=tolerance)


def test_video_xml_reads_back_as_the_tracks_on_the_videos_frame_numbers() -> None:
    """Parsed as CVAT's importer reads it, the file gives back every keyframe (two decimals) on the
    video's frame numbers, and CVAT shows the same persons as the uploaded tracks would."""
    frames = range(50)
    walker, walker_truth = one_track(walking, frames, 1.0, present=lambda f: f < 35)
    task = TaskFrames(
        9, "walk", 50, start_frame=100, stop_frame=100 + 49 * 3, frame_filter="step=3", width=640, height=480
    )
    data = video_xml([walker], NAMES, task)
    (loaded,) = load_video_xml(data, start_frame=100, step=3)
    assert loaded["label"] == "person" and [e["label"] for e in loaded["elements"]] == list(NAMES)
    expected = kept(track_json(walker))
    assert [s["frame"] for s in loaded["shapes"]] == [s["frame"] for s in expected["shapes"]]
    assert [s["outside"] for s in loaded["shapes"]] == [s["outside"] for s in expected["shapes"]]
    for got, want in zip(kept(loaded)["elements"], expected["elements"], strict=True):
        assert [(s["frame"], s["outside"]) for s in got["shapes"]] == [
            (s["frame"], s["outside"]) for s in want["shapes"]
        ]
        np.testing.assert_allclose(
            [s["points"] for s in got["shapes"]], [s["points"] for s in want["shapes"]], atol=0.005
        )
    view = shown(loaded, 50, NAMES)
    for frame in frames:
        assert (frame in view) == (frame in walker_truth)
        if frame in view:
            error = np.linalg.norm(view[frame][0] - walker_truth[frame][0], axis=1).max()
            assert error <= 1.0 + 0.01


def test_video_xml_meta_and_layout() -> None:
    track, _ = one_track(corner, range(5), 0.5)
    task = TaskFrames(9, "walk", 5, start_frame=0, stop_frame=4, frame_filter="", width=640, height=480)
    import xml.etree.ElementTree as ET

    root = ET.fromstring(video_xml([track], NAMES, task))
    meta = root.find("meta/task")
    assert meta is not None
    assert [meta.findtext(f) for f in ("id", "name", "size", "mode", "start_frame", "stop_frame")] == [
        "9",
        "walk",
        "5",
        "interpolation",
        "0",
        "4",
    ]
    labels = [
        (label.findtext("name"), label.findtext("type"), label.findtext("parent"))
        for label in meta.iter("label")
    ]
    assert labels == [("person", "skeleton", None), *((name, "points", "person") for name in NAMES)]
    (element,) = root.iter("track")
    assert element.attrib == {"id": "0", "label": "person", "source": "auto"}
    first = element.find("skeleton")
    assert first is not None and first.attrib["frame"] == "0" and first.attrib["keyframe"] == "1"
    assert [p.attrib["label"] for p in first.iter("points")] == list(NAMES)
    assert first.find("points").attrib["points"] == "100.00,60.00"


def test_video_xml_refuses_a_frame_outside_the_task() -> None:
    track, _ = one_track(corner, range(5), 0.5)
    task = TaskFrames(9, "walk", 3, start_frame=0, stop_frame=2, frame_filter="", width=640, height=480)
    with pytest.raises(ValueError, match=r"frame 4 is outside task 9's frames 0\.\.2"):
        video_xml([track], NAMES, task)
