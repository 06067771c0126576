"""The tracker's flags, for ``predict`` on a video and ``annotate-task``: made from one table whose
types and shown defaults come from :class:`alphapose.tracking.TrackerOptions`."""

from __future__ import annotations

import argparse
from typing import Any

from alphapose.errors import OptionError

# The tracker's flags, for `predict` on a video and `annotate-task`: option of
# alphapose.tracking.TrackerOptions -> (flag, help); the type and default shown come from TrackerOptions.
TRACKER_FLAGS = {
    "high_score": ("--track-high-score", "poses scoring at least this are matched first"),
    "low_score": (
        "--track-low-score",
        "poses scoring less are ignored; between the two they only continue tracks",
    ),
    "start_score": ("--track-start-score", "only a pose scoring at least this starts a track"),
    "start_keypoint_score": (
        "--track-start-keypoint-score",
        "and only if its best 17 keypoints score this on average",
    ),
    "iou_weight": ("--iou-weight", "share of box IoU in the similarity, the rest the pose's OKS"),
    "min_similarity": ("--min-similarity", "pairs less similar are never the same person"),
    "low_similarity": ("--low-similarity", "the same for a low-score pose"),
    "lost_discount": ("--lost-discount", "share of those bounds for a person not seen last frame"),
    "max_age": ("--max-age", "frames a lost person is waited for"),
    "min_hits": ("--min-hits", "poses before a track is confirmed and given an id"),
    "tentative_misses": ("--tentative-misses", "frames a track not yet confirmed may miss"),
    "keypoint_threshold": ("--track-keypoint-threshold", "keypoints below it are left out of OKS"),
    "motion_damping": ("--motion-damping", "share of a hidden person's speed kept each frame"),
    "follow_camera": (
        "--follow-camera",
        "move every prediction by the camera's motion, measured on the persons",
    ),
}


def add_tracker_options(group: Any) -> None:
    """The tracker's flags (``TRACKER_FLAGS``), for ``predict`` and ``annotate-task``."""
    from alphapose.tracking import TrackerOptions

    defaults = TrackerOptions()
    for name, (flag, text) in TRACKER_FLAGS.items():
        default = getattr(defaults, name)
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{text} ({default})")
        else:
            group.add_argument(flag, type=type(default), help=f"{text} ({default})")


def tracker_options(args: argparse.Namespace) -> Any:
    """The :class:`alphapose.tracking.TrackerOptions` the tracker flags give; a bad value is a
    ``ValueError`` whose message names the flag typed."""
    from alphapose.tracking import TrackerOptions

    given = {name: getattr(args, flag[2:].replace("-", "_")) for name, (flag, _) in TRACKER_FLAGS.items()}
    try:
        return TrackerOptions(**{name: value for name, value in given.items() if value is not None})
    except OptionError as exc:
        raise ValueError(f"invalid {TRACKER_FLAGS[exc.option][0]} {exc.value!r}: {exc.problem}") from None
