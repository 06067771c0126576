"""The tracker's flags: one table makes the flags of ``predict`` and ``annotate-task`` and the README's
table of them."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import fields

import pytest
from repo_paths import REPO

from alphapose.tracking import TrackerOptions
from tools.readme import TRACKER_TABLE, tracker_block
from tools.tracker_flags import TRACKER_FLAGS, add_tracker_options, tracker_options

README = REPO / "README.md"


def test_the_readme_table_is_the_flags_table() -> None:
    # python -m tools.readme writes it; a row changed in either place fails here
    assert TRACKER_TABLE.current(README) == tracker_block()


def test_every_tracker_option_has_a_flag_and_the_readme_shows_its_default() -> None:
    """Read back from the README's text, not from the table's maker: a row whose default is not
    TrackerOptions' fails."""
    assert set(TRACKER_FLAGS) == {f.name for f in fields(TrackerOptions)}
    readme = README.read_text()
    defaults = TrackerOptions()
    for name, (flag, _) in TRACKER_FLAGS.items():
        row = re.search(r"^\| `" + re.escape(flag) + r"`[^|]*\| `?([^|`]+)`? \|", readme, re.MULTILINE)
        assert row, f"{flag} is not in the README's table"
        default = getattr(defaults, name)
        shown = {True: "on", False: "off"}[default] if isinstance(default, bool) else str(default)
        assert row.group(1) == shown, flag


def _parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_tracker_options(parser)
    return parser.parse_args(list(argv))


def test_flags_left_out_keep_the_defaults_and_given_ones_set_their_option() -> None:
    assert tracker_options(_parsed()) == TrackerOptions()
    chosen = tracker_options(_parsed("--max-age", "60", "--no-follow-camera", "--iou-weight", "0.5"))
    assert chosen == TrackerOptions(max_age=60, follow_camera=False, iou_weight=0.5)


def test_a_missing_scipy_is_named_with_the_extra_to_install_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """scipy comes with the ``video`` extra only; without it, reading the flags says what to install
    (found before the model loads), and the flags and their help need no scipy."""
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    assert TRACKER_TABLE.current(README) == tracker_block()
    with pytest.raises(ValueError, match=r"^tracking needs scipy .*requirements-video\.txt"):
        tracker_options(_parsed("--max-age", "60"))
