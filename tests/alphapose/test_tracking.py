"""The pose tracker on synthetic trajectories whose identities are written out by hand, its options,
its similarity against AlphaPose's formula, and the OKS sigmas against the official table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from repo_paths import TEST_DATA

from alphapose.errors import OptionError
from alphapose.pose.skeletons import COCO17, SKELETONS, oks_sigmas
from alphapose.structures import Pose
from alphapose.tracking import PoseTracker, TrackerOptions, object_keypoint_similarity, pose_similarity

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
    """The identity of each pose of each frame as the tracker hands the frames back (0: left out)."""
    settled = list(tracker.track(enumerate(frames)))
    assert [frame for frame, _ in settled] == list(range(len(frames)))  # every frame, in order
    result = []
    for (_, persons), poses in zip(settled, frames, strict=True):
        given = {id(pose): track_id for track_id, pose in persons}
        result.append([given.get(id(pose), 0) for pose in poses])
    return result


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


def test_motion_damping_finds_a_person_who_stops_while_hidden() -> None:
    """A walks right at 20 px a frame until frame 3, is hidden in frames 4 and 5 and stands still
    from frame 3 on; C enters far away. Undamped (the default, best on walking persons), the
    prediction has walked on 60 px, more than A's width, and A comes back as a new person; with the
    speed damped to 0.3 a frame, the prediction stops near where A stopped and A keeps its identity."""
    frames = [[person(20 * t)] for t in range(4)] + [[], []] + [[person(60), person(500)]] * 3
    damped = run(PoseTracker(TrackerOptions(motion_damping=0.3), sigmas=SIGMAS), frames)
    assert damped == [[1]] * 4 + [[], []] + [[1, 2]] * 3
    assert run(PoseTracker(sigmas=SIGMAS), frames) == [[1]] * 4 + [[], []] + [[2, 3]] * 3


def test_person_hidden_longer_than_max_age_gets_a_new_identity() -> None:
    frames = [[person(10 + 15 * t)] if t not in (4, 5, 6) else [] for t in range(11)]
    expected = [[1]] * 4 + [[]] * 3 + [[2]] * 4
    assert run(PoseTracker(TrackerOptions(max_age=2), sigmas=SIGMAS), frames) == expected
    kept = [[1]] * 4 + [[]] * 3 + [[1]] * 4
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
        [q, r, p],  # 12
    ]
    expected = [[1, 2], [1, 2], [1, 2, 3], [1, 3], [1, 3], [1, 2, 3], [1], [1], [1], [1], [1, 4, 5]]
    expected += [[5, 4, 1], [4, 5, 1]]
    tracker = PoseTracker(TrackerOptions(max_age=3), sigmas=SIGMAS)
    assert run(tracker, frames) == expected
    assert tracker.active_ids == [1, 4, 5]


def test_a_person_leaving_as_another_enters_nearby_is_not_continued_by_it() -> None:
    """P leaves after frame 2 and S enters 50 px to its right in frame 3: the boxes do not overlap,
    so S is a new person."""
    frames = [[person(0)]] * 3 + [[person(90)]] * 3
    assert run(PoseTracker(sigmas=SIGMAS), frames) == [[1]] * 3 + [[2]] * 3


def test_a_one_frame_false_detection_is_left_out_and_captures_nobody() -> None:
    """A confident detection at x=600 in frame 3 only, then a person entering there in frame 7 (later
    than the ``tentative_misses`` a new track may miss): the one-frame track never confirmed, so it is
    left out of the output and takes no identity, and the person who enters gets the next one."""
    p = person(0)
    frames = [[p], [p], [p], [p, person(600)], [p], [p], [p]] + [[p, person(600)]] * 3
    expected = [[1], [1], [1], [1, 0], [1], [1], [1], [1, 2], [1, 2], [1, 2]]
    assert run(PoseTracker(sigmas=SIGMAS), frames) == expected
    # confirmed at birth (min_hits 1), the one-frame track is output and waits for the person
    expected_kept = [[1], [1], [1], [1, 2], [1], [1], [1], [1, 2], [1, 2], [1, 2]]
    assert run(PoseTracker(TrackerOptions(min_hits=1), sigmas=SIGMAS), frames) == expected_kept


def test_a_confirmed_track_is_output_from_its_first_frame() -> None:
    """A track is confirmed at its third pose, and its first two frames are handed back then, with
    its identity (CVAT needs those frames); until then the tracker holds them back."""
    tracker = PoseTracker(sigmas=SIGMAS)
    walker = [person(10 + 5 * t) for t in range(4)]
    assert tracker.update([walker[0]]) == []
    assert tracker.update([walker[1]]) == []
    settled = tracker.update([walker[2]])
    assert [(frame, [(i, pose is walker[frame]) for i, pose in persons]) for frame, persons in settled] == [
        (0, [(1, True)]),
        (1, [(1, True)]),
        (2, [(1, True)]),
    ]
    assert [frame for frame, _ in tracker.update([walker[3]])] == [3]
    assert tracker.finish() == []


# --- the traced causes of identity switches -----------------------------------------------------------


def test_a_tentative_track_survives_a_one_frame_miss() -> None:
    """A half-hidden person flickers: seen in frames 0 and 1, missed in frame 2, seen again from frame
    3 on. It is one person with one identity, output from frame 0 on."""
    frames = [[person(10 + 4 * t)] if t != 2 else [] for t in range(7)]
    assert run(PoseTracker(sigmas=SIGMAS), frames) == [[1], [1], [], [1], [1], [1], [1]]
    # a track that may miss no frame while tentative ends, and the person starts again as another
    strict = run(PoseTracker(TrackerOptions(tentative_misses=0), sigmas=SIGMAS), frames)
    assert strict == [[0], [0], [], [1], [1], [1], [1]]


def test_a_predicted_box_keeps_its_size_through_a_fifteen_frame_gap() -> None:
    """A person walks right at 6 px a frame, its box growing 2 px a frame with noise, then is hidden for
    15 frames: the prediction holds the last observed size (a size velocity carried on for 15 frames
    would swell or invert the box) and moves on at the walking speed, so the person is found where it
    walked to."""
    frames = []
    rng = np.random.default_rng(3)
    for t in range(10):
        x = 10 + 6 * t
        pose = person(x)
        pose.box[2:] += 2 * t + rng.normal(0, 1, 2)
        frames.append([pose])
    tracker = PoseTracker(sigmas=SIGMAS)
    for poses in frames:
        tracker.update(poses)
    last = frames[-1][0].box
    for _ in range(15):
        tracker.update([])
    track = tracker._tracks[0]
    tracker.update([])  # one more frame moves the prediction on
    predicted = np.concatenate([track.mean[:2] - track.mean[2:4] / 2, track.mean[:2] + track.mean[2:4] / 2])
    np.testing.assert_allclose(predicted[2:] - predicted[:2], last[2:] - last[:2], atol=1e-6)
    assert predicted[0] == pytest.approx(last[0] + 6 * 17, abs=12)  # 17 frames on at about 6 px a frame
    back = person(float(predicted[0]))
    back.box[2:] = back.box[:2] + (last[2:] - last[:2])
    assert [i for i, _ in tracker.update([back])[0].persons] == [1]


def test_a_ghost_cannot_start_a_track_nor_take_a_confirmed_one() -> None:
    """A static ghost scored 0.3 is detected in frames 0-9; a person walks through its place. The
    ghost never starts a track (nor is output), and the person keeps its identity across it."""
    ghost_x = 200
    frames = []
    for t in range(16):
        walker = person(100 + 12 * t)
        frames.append([walker, person(ghost_x, score=0.3)] if t < 10 else [walker])
    identities = run(PoseTracker(sigmas=SIGMAS), frames)
    assert identities == [[1, 0]] * 10 + [[1]] * 6


def test_a_ghost_seen_for_several_frames_does_not_take_a_passer_by() -> None:
    """A ghost scored 0.5 (matched in the first round, but below ``start_score``) is detected at x=300
    in frames 0-5 running; a person walking in from the left reaches its place in frame 10. Had the
    ghost started a track, it would be confirmed and waiting there (max_age 30) to take the person
    over; it never starts one, is never output, and the person keeps identity 1."""
    frames = []
    for t in range(16):
        walker = person(150 + 15 * t)
        frames.append([walker, person(300, score=0.5)] if t < 6 else [walker])
    identities = run(PoseTracker(sigmas=SIGMAS), frames)
    assert identities == [[1, 0]] * 6 + [[1]] * 10
    # a ghost allowed to start a track is confirmed, and is output
    loose = run(PoseTracker(TrackerOptions(start_score=0.5), sigmas=SIGMAS), frames)
    assert loose[:6] == [[1, 2]] * 6


def test_low_score_poses_continue_tracks_but_never_start_them() -> None:
    """A is confident for 4 frames, then half hidden and scored 0.3 for 4 frames: its track goes on
    through them. B is scored 0.3 throughout: it never starts a track and is left out."""
    frames = []
    for t in range(8):
        a = person(10 + 3 * t, score=0.9 if t < 4 else 0.3)
        b = person(400, score=0.3)
        frames.append([a, b])
    assert run(PoseTracker(sigmas=SIGMAS), frames) == [[1, 0]] * 8
    # below low_score even a continuation is dropped: A's track stops at frame 3
    ignored = run(PoseTracker(TrackerOptions(low_score=0.35, start_score=0.6), sigmas=SIGMAS), frames)
    assert ignored == [[1, 0]] * 4 + [[0, 0]] * 4


def test_mixed_visibility_pairs_are_scored_on_one_scale() -> None:
    """A stands at x=0 with every keypoint seen; B stands at x=22 with none seen (all below the
    threshold). Then a single pose of A comes, every keypoint seen, 10 px to the right: its IoU is
    0.6 with A's box and 0.54 with B's. The pair with keypoints must not lose to the pair scored by IoU
    alone just because OKS is a stricter scale than IoU (a 10 px shift costs OKS far more): A keeps it."""
    hidden = person(22)
    hidden.keypoint_scores[:] = 0.01
    frames = [[person(0), hidden] for _ in range(4)]
    frames.append([person(10)])
    options = TrackerOptions(max_age=5, start_keypoint_score=0.0)  # B starts with no keypoint seen
    identities = run(PoseTracker(options, sigmas=SIGMAS), frames)
    assert identities == [[1, 2]] * 4 + [[1]]


def test_a_confident_box_whose_keypoints_score_low_starts_no_track() -> None:
    """A false detection scored 0.7 whose keypoints all score 0.2 (no body there) never starts a track;
    the same box with the keypoints of a body (0.8) does."""
    ghost = person(300, score=0.7)
    ghost.keypoint_scores[:] = 0.2
    assert run(PoseTracker(sigmas=SIGMAS), [[person(0), ghost]] * 4) == [[1, 0]] * 4
    assert run(PoseTracker(sigmas=SIGMAS), [[person(0), person(300, score=0.7)]] * 4) == [[1, 2]] * 4


def _velocities(follow_camera: bool, frames: list[list[Pose]]) -> np.ndarray:
    tracker = PoseTracker(TrackerOptions(follow_camera=follow_camera), sigmas=SIGMAS)
    for poses in frames:
        tracker.update(poses)
    return np.stack([track.mean[4:6] for track in tracker._tracks])


def test_a_camera_jump_moves_every_prediction_and_leaves_the_speeds() -> None:
    """Five persons stand still; in frame 6 the camera jumps and all of them appear 14 px right and 6 px
    down. Measured on them all, the jump moves every prediction before the filter's correction, so no
    person takes it for a step of its own; without it each filter takes up part of the jump as a
    speed and would carry the persons on."""
    frames = [[person(100 + 100 * i) for i in range(5)] for _ in range(6)]
    frames.append([person(114 + 100 * i, 106) for i in range(5)])
    np.testing.assert_allclose(_velocities(True, frames), 0.0, atol=0.1)
    assert (np.abs(_velocities(False, frames)[:, 0]) > 1.0).all()


def test_persons_walking_their_own_ways_move_no_prediction() -> None:
    """Five persons walking at their own speeds and directions: their predictions' misses do not agree,
    so no camera motion is found and the tracker runs as without it."""
    rng = np.random.default_rng(5)
    speeds = rng.uniform(-4, 4, (5, 2))
    frames = [
        [person(100 + 150 * i + speeds[i, 0] * t, 300 + speeds[i, 1] * t) for i in range(5)]
        for t in range(12)
    ]
    np.testing.assert_allclose(_velocities(True, frames), _velocities(False, frames))


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
    back, and they are exactly 1..N (none skipped)."""
    rng = np.random.default_rng(7)
    tracker = PoseTracker(TrackerOptions(max_age=2), sigmas=SIGMAS)
    positions = rng.uniform(0, 2000, 12)
    frames = []
    for _ in range(150):
        positions += rng.normal(0, 4, len(positions))
        shown = [x for x in positions if rng.random() > 0.3]
        frames.append([person(x, 100 + (i % 3) * 150) for i, x in enumerate(shown)])
    last_seen: dict[int, int] = {}
    for frame, identities in enumerate(run(tracker, frames)):
        given = [i for i in identities if i]
        assert len(set(given)) == len(given)
        for track_id in given:
            if track_id in last_seen:
                assert frame - last_seen[track_id] - 1 <= 2  # missed frames at most max_age
            last_seen[track_id] = frame
    assert sorted(last_seen) == list(range(1, len(last_seen) + 1))
    tracker.reset()
    assert tracker.active_ids == []
    frames = [[person(0), person(300)]] * 3
    assert run(tracker, frames) == [[1, 2]] * 3


def test_empty_frames_and_no_keypoint_sigmas() -> None:
    frames = [[], [person(0)], [person(1)], [person(2)], [], [person(4)], [], [person(9)]]
    assert run(PoseTracker(), frames) == [[], [1], [1], [1], [], [1], [], [1]]


def test_a_pose_of_another_skeleton_is_refused() -> None:
    tracker = PoseTracker(sigmas=oks_sigmas(SKELETONS["halpe26"]))
    with pytest.raises(ValueError, match="17 keypoints but there are 26 sigmas"):
        tracker.update([person(0)])
    with pytest.raises(ValueError, match="one positive number per keypoint"):
        PoseTracker(sigmas=[0.1, 0.0])


def test_the_threshold_filters_after_tracking() -> None:
    """``track``'s threshold, the one rule for ``--threshold`` on a video: the identities are the ones
    the tracker gave with every pose seen, and the persons scored lower are dropped after it. A person
    scored low for longer than max_age keeps its identity: filtered before tracking, it would have been
    lost and come back as a new track."""
    low = range(4, 9)  # 5 frames, max_age 3
    frames = [[person(10 + 3 * t, score=0.3 if t in low else 0.9)] for t in range(14)]

    def kept(threshold: float | None) -> list[list[int]]:
        tracker = PoseTracker(TrackerOptions(max_age=3), sigmas=SIGMAS)
        return [
            [i for i, _ in frame.persons] for frame in tracker.track(enumerate(frames), threshold=threshold)
        ]

    assert kept(0.5) == [[] if t in low else [1] for t in range(14)]
    assert kept(None) == kept(0.0) == [[1]] * 14


# --- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("iou_weight", 1.5, "must be in [0, 1]"),
        ("high_score", True, "must be in [0, 1]"),
        ("low_score", 0.7, "must be at most high_score (0.4)"),
        ("start_score", -0.1, "must be in [0, 1]"),
        ("min_similarity", 0.0, "must be in (0, 1]"),
        ("low_similarity", 1.5, "must be in (0, 1]"),
        ("max_age", -1, "must be at least 0"),
        ("max_age", 2.5, "must be a whole number of frames"),
        ("min_hits", 0, "must be at least 1"),
        ("tentative_misses", -1, "must be at least 0"),
        ("keypoint_threshold", -0.1, "must be in [0, 1]"),
        ("motion_damping", 2, "must be in [0, 1]"),
        ("start_keypoint_score", 1.2, "must be in [0, 1]"),
        ("lost_discount", -0.5, "must be in [0, 1]"),
        ("follow_camera", "yes", "must be true or false"),
    ],
)
def test_tracker_options_are_checked(option: str, value: object, problem: str) -> None:
    with pytest.raises(OptionError) as caught:
        TrackerOptions(**{option: value})
    assert (caught.value.option, caught.value.value, caught.value.problem) == (option, value, problem)


def test_tracker_option_defaults_from_the_official_trackers() -> None:
    """ByteTrack waits 30 frames for a lost track (``track_buffer``) and ignores detections below 0.1;
    OC-SORT confirms after 3 hits (``min_hits``). The other defaults were chosen on
    ``python -m bench.tracking`` (bench/README.md)."""
    options = TrackerOptions()
    assert (options.max_age, options.low_score, options.min_hits) == (30, 0.1, 3)


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


def test_pose_similarity_compares_bodies_wherever_their_boxes_are() -> None:
    """The pose evidence is OKS after each pose is moved to its box's centre and scaled to unit box
    height: the same body shifted and twice as large scores 1, the arms-up body less, and a pair with
    no keypoint in common 0 with no keypoint counted."""
    a = person(0)
    moved = person(500, 300)
    moved.box[2:] = moved.box[:2] + 2 * (moved.box[2:] - moved.box[:2])
    moved.keypoints[:] = moved.box[:2] + 2 * (a.keypoints - a.box[:2])
    raised = person(0, shape=ARMS_UP)
    boxes = np.stack([p.box for p in (moved, raised)]).astype(np.float64)
    keypoints = np.stack([p.keypoints for p in (moved, raised)]).astype(np.float64)
    visible = np.ones((2, 17), bool)
    oks, shared = pose_similarity(
        a.box[None].astype(np.float64),
        a.keypoints[None].astype(np.float64),
        visible[:1],
        boxes,
        keypoints,
        visible,
        SIGMAS,
    )
    assert oks[0, 0] == pytest.approx(1.0) and oks[0, 1] < 0.8
    assert shared.tolist() == [[17, 17]]
    oks, shared = pose_similarity(
        a.box[None].astype(np.float64),
        a.keypoints[None].astype(np.float64),
        ~visible[:1],
        boxes,
        keypoints,
        visible,
        SIGMAS,
    )
    assert oks.tolist() == [[0.0, 0.0]] and shared.tolist() == [[0, 0]]


def test_oks_sigmas_are_alphapose_s() -> None:
    """tests/data/oks_sigmas_official.json was recorded from the official oks_iou (see its source)."""
    recorded = json.loads((TEST_DATA / "oks_sigmas_official.json").read_text())
    assert "c60106d" in recorded["source"]
    for name, sigmas in recorded["sigmas"].items():
        assert oks_sigmas(SKELETONS[name]) == pytest.approx(sigmas, abs=1e-9), name
    assert oks_sigmas(SKELETONS["halpe68"]) is None  # AlphaPose has none for it
