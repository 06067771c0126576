"""The pose tracker on synthetic trajectories whose identities are written out by hand, its options,
its similarity against AlphaPose's formula, and the OKS sigmas against the official table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alphapose.errors import OptionError
from alphapose.pipeline import Pose
from alphapose.skeletons import COCO17, SKELETONS, oks_sigmas
from alphapose.tracking import PoseTracker, TrackerOptions, object_keypoint_similarity

SIGMAS = oks_sigmas(COCO17)
WIDTH, HEIGHT = 40.0, 100.0
# A standing person's keypoints in its box, from COCO's drawing layout (0-100 in both directions).
STANDING = np.array(COCO17.layout) / 100.0
# The same person with the arms raised over the head: elbows and wrists above the eyes.
ARMS_UP = STANDING.copy()
ARMS_UP[[7, 8, 9, 10], 1] = (0.02, 0.02, -0.15, -0.15)
ARMS_UP[[7, 9], 0] = (0.85, 0.95)
ARMS_UP[[8, 10], 0] = (0.15, 0.05)


def person(x: float, y: float = 100.0, shape: np.ndarray = STANDING, score: float = 0.9) -> Pose:
    """A person whose box has its top-left corner at (x, y)."""
    keypoints = (np.array([x, y]) + shape * np.array([WIDTH, HEIGHT])).astype(np.float32)
    box = np.array([x, y, x + WIDTH, y + HEIGHT], dtype=np.float32)
    return Pose(box, score, keypoints, np.full(len(shape), 0.8, np.float32), 3.0)


def run(tracker: PoseTracker, frames: list[list[Pose]]) -> list[list[int]]:
    return [tracker.update(poses) for poses in frames]


# --- trajectories --------------------------------------------------------------------------------------


def test_crossing_persons_keep_their_identities() -> None:
    """A walks right and B left at 10 px a frame; between frames 4 and 5 they pass each other, so at
    frame 5 each stands where the other stood: only the motion model tells them apart."""
    a = [person(5 + 10 * t, 100) for t in range(10)]
    b = [person(95 - 10 * t, 104) for t in range(10)]
    frames = [[a[t], b[t]] if t % 2 == 0 else [b[t], a[t]] for t in range(10)]
    expected = [[1, 2] if t % 2 == 0 else [2, 1] for t in range(10)]
    assert run(PoseTracker(sigmas=SIGMAS), frames) == expected
    assert run(PoseTracker(sigmas=None), frames) == expected  # box IoU alone, with the motion model


def test_person_hidden_for_three_frames_is_found_where_it_walked_to() -> None:
    """A walks right at 15 px a frame and is hidden in frames 4-6: it reappears 60 px (more than its
    width) from where it was last seen; B stands still."""
    frames = []
    for t in range(10):
        a = person(10 + 15 * t)
        b = person(400)
        frames.append([b] if t in (4, 5, 6) else [a, b])
    expected = [[1, 2]] * 4 + [[2]] * 3 + [[1, 2]] * 3
    assert run(PoseTracker(sigmas=SIGMAS), frames) == expected


def test_person_who_stops_while_hidden_is_matched_by_its_last_observation() -> None:
    """A walks right at 20 px a frame until frame 3, is hidden in frames 4 and 5 and stands still
    from frame 3 on: the constant-velocity prediction has overshot by 60 px, more than its width, so the
    second round (the last observation) finds it; C enters far away."""
    frames = [[person(20 * t)] for t in range(4)] + [[], []] + [[person(60), person(500)]] * 3
    expected = [[1]] * 4 + [[], []] + [[1, 2]] * 3
    assert run(PoseTracker(sigmas=SIGMAS), frames) == expected


def test_person_hidden_longer_than_max_age_gets_a_new_identity() -> None:
    frames = [[person(10 + 15 * t)] if t not in (4, 5, 6) else [] for t in range(9)]
    expected = [[1]] * 4 + [[]] * 3 + [[2]] * 2
    assert run(PoseTracker(TrackerOptions(max_age=2), sigmas=SIGMAS), frames) == expected
    kept = [[1]] * 4 + [[]] * 3 + [[1]] * 2
    assert run(PoseTracker(TrackerOptions(max_age=3), sigmas=SIGMAS), frames) == kept


def test_entries_and_exits() -> None:
    """P stays; Q leaves after frame 2, is back in frame 5 (3 frames missed: kept with max_age 3), leaves
    again and is back in frame 10 (4 frames missed: a new person); R enters in frame 2 and leaves after
    frame 5, then is back in frame 10 too. Identities are never given twice."""
    p, q, r = person(0), person(200), person(400)
    frames = [
        [p, q],  # 0
        [p, q],  # 1
        [p, q, r],  # 2
        [p, r],  # 3
        [p, r],  # 4
        [p, q, r],  # 5
        [p],  # 6
        [p],  # 7
        [p],  # 8
        [p],  # 9
        [p, q, r],  # 10
        [r, q, p],  # 11
    ]
    expected = [[1, 2], [1, 2], [1, 2, 3], [1, 3], [1, 3], [1, 2, 3], [1], [1], [1], [1], [1, 4, 5]]
    expected.append([5, 4, 1])
    tracker = PoseTracker(TrackerOptions(max_age=3), sigmas=SIGMAS)
    assert run(tracker, frames) == expected
    assert tracker.active_ids == [1, 4, 5]


def test_a_person_leaving_as_another_enters_nearby_is_not_continued_by_it() -> None:
    """P leaves after frame 2 and S enters 50 px to its right in frame 3: boxes apart, keypoints far
    apart (OKS small but not 0), so below min_similarity and S is a new person."""
    frames = [[person(0)]] * 3 + [[person(90)]] * 2
    assert run(PoseTracker(sigmas=SIGMAS), frames) == [[1]] * 3 + [[2]] * 2


def test_a_one_frame_false_detection_does_not_capture_a_later_person() -> None:
    """A detection at x=600 in frame 3 only, then a person entering there in frame 5: the one-frame
    track was tentative and ended at its first miss."""
    p, ghost = person(0), person(600, score=0.2)
    frames = [[p], [p], [p], [p, ghost], [p], [p, person(600)], [p, person(600)]]
    expected = [[1], [1], [1], [1, 2], [1], [1, 3], [1, 3]]
    assert run(PoseTracker(sigmas=SIGMAS), frames) == expected
    # confirmed at birth (min_hits 1), the same track waits for it
    expected_kept = [[1], [1], [1], [1, 2], [1], [1, 2], [1, 2]]
    assert run(PoseTracker(TrackerOptions(min_hits=1), sigmas=SIGMAS), frames) == expected_kept


def test_two_persons_in_the_same_box_are_told_apart_by_their_keypoints() -> None:
    """One stands behind the other: the boxes coincide, only the keypoints differ (arms down, arms up);
    the detector lists them in a different order every other frame while both walk right."""
    frames = []
    for t in range(8):
        down, up = person(50 + 3 * t, shape=STANDING), person(50 + 3 * t, shape=ARMS_UP)
        frames.append([down, up] if t % 2 == 0 else [up, down])
    expected = [[1, 2] if t % 2 == 0 else [2, 1] for t in range(8)]
    assert run(PoseTracker(sigmas=SIGMAS), frames) == expected


def test_low_scoring_keypoints_are_left_out_of_oks() -> None:
    """The arms-up person's arm keypoints score below the threshold: OKS then sees two identical poses
    and the detection order decides, so the identities follow the order."""
    frames = []
    for t in range(4):
        down, up = person(50, shape=STANDING), person(50, shape=ARMS_UP)
        for pose in (down, up):
            pose.keypoint_scores[[7, 8, 9, 10]] = 0.01
        frames.append([down, up] if t % 2 == 0 else [up, down])
    assert run(PoseTracker(sigmas=SIGMAS), frames) == [[1, 2]] * 4


def test_identities_never_repeat_and_reset_starts_again() -> None:
    """Random walkers that come and go: identities are unique in a frame, one that has ended never comes
    back, and new ones are counted up from 1."""
    rng = np.random.default_rng(7)
    tracker = PoseTracker(TrackerOptions(max_age=2), sigmas=SIGMAS)
    positions = rng.uniform(0, 2000, 12)
    last_seen: dict[int, int] = {}
    highest = 0
    for frame in range(150):
        positions += rng.normal(0, 4, len(positions))
        shown = [x for x in positions if rng.random() > 0.3]
        ids = tracker.update([person(x, 100 + (i % 3) * 150) for i, x in enumerate(shown)])
        assert len(set(ids)) == len(ids)
        for track_id in ids:
            if track_id in last_seen:
                assert frame - last_seen[track_id] - 1 <= 2  # missed frames at most max_age
            else:
                assert track_id == highest + 1
                highest = track_id
            last_seen[track_id] = frame
    tracker.reset()
    assert tracker.active_ids == []
    assert tracker.update([person(0), person(300)]) == [1, 2]


def test_empty_frames_and_no_keypoint_sigmas() -> None:
    frames = [[], [person(0)], [person(1)], [person(2)], [], [person(4)], [], [person(9)]]
    assert run(PoseTracker(), frames) == [[], [1], [1], [1], [], [1], [], [1]]


def test_a_pose_of_another_skeleton_is_refused() -> None:
    tracker = PoseTracker(sigmas=oks_sigmas(SKELETONS["halpe26"]))
    with pytest.raises(ValueError, match="17 keypoints but there are 26 sigmas"):
        tracker.update([person(0)])
    with pytest.raises(ValueError, match="one positive number per keypoint"):
        PoseTracker(sigmas=[0.1, 0.0])


# --- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("iou_weight", 1.5, "must be in [0, 1]"),
        ("min_similarity", 0.0, "must be in (0, 1]"),
        ("max_age", -1, "must be at least 0"),
        ("max_age", 2.5, "must be a whole number of frames"),
        ("min_hits", 0, "must be at least 1"),
        ("keypoint_threshold", -0.1, "must be in [0, 1]"),
        ("velocity_smoothing", 2, "must be in [0, 1]"),
    ],
)
def test_tracker_options_are_checked(option: str, value: object, problem: str) -> None:
    with pytest.raises(OptionError) as caught:
        TrackerOptions(**{option: value})
    assert (caught.value.option, caught.value.value, caught.value.problem) == (option, value, problem)


def test_tracker_option_defaults() -> None:
    """ByteTrack waits 30 frames for a lost track; SORT confirms after 3 hits; 0.2 is PoseFlow's match
    threshold and ByteTrack's (cost 0.8 of 1 - IoU)."""
    options = TrackerOptions()
    assert (options.max_age, options.min_hits, options.min_similarity) == (30, 3, 0.2)


# --- similarity and sigmas -------------------------------------------------------------------------


def test_oks_is_alphapose_oks_iou() -> None:
    """alphapose/utils/pPose_nms.py oks_iou: e = d² / (2σ)² / ((area_g + area_d) / 2 + eps) / 2, the mean
    of exp(-e) over the keypoints visible in both. Worked by hand for two keypoints, one of them hidden
    in the second pose, and a pair with no keypoint in common."""
    a = np.array([[[0.0, 0.0], [10.0, 0.0]]])
    b = np.array([[[3.0, 4.0], [10.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    visible_a = np.array([[True, True]])
    visible_b = np.array([[True, False], [False, False]])
    sigmas = np.array([0.05, 0.5])
    oks, shown = object_keypoint_similarity(
        a, visible_a, np.array([100.0]), b, visible_b, np.array([300.0, 300.0]), sigmas
    )
    expected = np.exp(-25.0 / (0.1**2) / 200.0 / 2)  # only keypoint 0: d² = 25, (2σ)² = 0.01, s² = 200
    np.testing.assert_allclose(oks, [[expected, 0.0]], rtol=1e-12)
    assert shown.tolist() == [[True, False]]


def test_oks_sigmas_are_alphapose_s() -> None:
    """tests/data/oks_sigmas_official.json was recorded from the official oks_iou (see its source)."""
    recorded = json.loads((Path(__file__).parent / "data" / "oks_sigmas_official.json").read_text())
    assert "c60106d" in recorded["source"]
    for name, sigmas in recorded["sigmas"].items():
        assert oks_sigmas(SKELETONS[name]) == pytest.approx(sigmas, abs=1e-9), name
    assert oks_sigmas(SKELETONS["halpe68"]) is None  # AlphaPose has none for it
