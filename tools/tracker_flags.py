"""The tracker's flags, for ``predict`` on a video and ``annotate-task``, and the README's table of them:
made from one table whose types and shown defaults come from :class:`alphapose.tracking.TrackerOptions`."""

from __future__ import annotations

import argparse
from typing import Any

from alphapose.errors import OptionError

# option of alphapose.tracking.TrackerOptions -> (flag, help)
TRACKER_FLAGS = {
    "high_score": ("--track-high-score", "persons with a box score at least this are matched first"),
    "low_score": (
        "--track-low-score",
        "persons scoring less are ignored; between the two they only continue tracks",
    ),
    "start_score": ("--track-start-score", "only a person scoring at least this starts a track"),
    "start_keypoint_score": (
        "--track-start-keypoint-score",
        "and only if its best 17 keypoint scores average this (a false detection's keypoints score low)",
    ),
    "iou_weight": (
        "--iou-weight",
        "share of box IoU in the similarity when every keypoint is seen; the rest is OKS",
    ),
    "min_similarity": (
        "--min-similarity",
        "a person and a track less similar than this are never matched",
    ),
    "low_similarity": ("--low-similarity", "the same for a low-scored person"),
    "lost_discount": (
        "--lost-discount",
        "share of those bounds for a track not seen in the last frame, whose prediction is less sure",
    ),
    "max_age": ("--max-age", "frames a lost person is waited for before its track ends"),
    "min_hits": ("--min-hits", "frames a track needs to be confirmed, numbered and written"),
    "tentative_misses": ("--tentative-misses", "frames a track not yet confirmed may miss"),
    "keypoint_threshold": (
        "--track-keypoint-threshold",
        "keypoints scoring below it are left out of OKS",
    ),
    "motion_damping": (
        "--motion-damping",
        "share of a hidden person's speed kept each frame (lower it for persons who stop behind things)",
    ),
    "follow_camera": ("--follow-camera", "take the camera's motion out of the predictions"),
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
    """The :class:`alphapose.tracking.TrackerOptions` the tracker flags give; a bad value, or a tracker
    that cannot run here (scipy missing), is a ``ValueError`` whose message names the flag typed or the
    package to install, found before any model loads."""
    from alphapose.tracking import TrackerOptions, optimal_assignment

    given = {name: getattr(args, flag[2:].replace("-", "_")) for name, (flag, _) in TRACKER_FLAGS.items()}
    try:
        options = TrackerOptions(**{name: value for name, value in given.items() if value is not None})
        optimal_assignment()
    except OptionError as exc:
        raise ValueError(f"invalid {TRACKER_FLAGS[exc.option][0]} {exc.value!r}: {exc.problem}") from None
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    return options


def readme_table() -> str:
    """The README's table of the tracker's flags (``python -m tools.readme`` writes it there)."""
    from alphapose.tracking import TrackerOptions

    defaults = TrackerOptions()
    lines = ["| flag | default | meaning |", "|---|---|---|"]
    for name, (flag, text) in TRACKER_FLAGS.items():
        default = getattr(defaults, name)
        if isinstance(default, bool):
            shown_flag = f"`{flag}` / `--no-{flag[2:]}`"
            shown_default = "on" if default else "off"
        else:
            shown_flag, shown_default = f"`{flag}`", f"`{default}`"
        lines.append(f"| {shown_flag} | {shown_default} | {text} |")
    return "\n".join(lines) + "\n"
