"""The settings table: the README's table, the flags and the SDK parameters are all made from it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from repo_paths import REPO

from alphapose.cvat.settings import (
    BY_NAME,
    FLAGS,
    SETTINGS,
    Config,
    setting_flags,
)
from alphapose.options import PipelineOptions
from tools.cli import build_parser
from tools.readme import SETTINGS_TABLE, settings_block

README = REPO / "README.md"


def test_the_readme_table_is_the_settings_table() -> None:
    # python -m tools.readme writes it; a row changed in either place fails here
    assert SETTINGS_TABLE.current(README) == settings_block()


def test_every_setting_has_one_row_and_pipeline_defaults_are_pipeline_options() -> None:
    assert len(BY_NAME) == len(SETTINGS)
    defaults = PipelineOptions()
    for setting in SETTINGS:
        if hasattr(defaults, setting.name):
            assert setting.default == getattr(defaults, setting.name)
    assert Config().options == defaults


def test_each_command_takes_the_setting_flags_of_the_table() -> None:
    for name in ("predict", "annotate-task", "evaluate"):
        commands = build_parser([name])._subparsers._group_actions[0].choices
        taken = {flag for action in commands[name]._actions for flag in action.option_strings}
        assert set(FLAGS) <= taken, name
    argv = ["predict", "x.png", "--device", "cpu", "--flip", "--calibration", "cal"]
    args = build_parser(argv).parse_args(argv)
    given = setting_flags(args)
    assert given == {"--device": "cpu", "--flip": "1", "--calibration": "cal"}
    config = Config.from_env({}, flags=given)
    assert (config.options.device, config.options.flip, str(config.options.calibration)) == (
        "cpu",
        True,
        "cal",
    )


def test_the_model_record_holds_the_calibration_set_by_its_contents(tmp_path: Path) -> None:
    """What evaluate's partial results and annotate-task's checkpoints are continued under: a changed
    calibration frame in the same directory is another model (it quantizes the networks differently)."""
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    frame = calibration / "a.png"
    cv2.imwrite(str(frame), np.zeros((8, 8, 3), np.uint8))
    config = Config.from_env(
        {
            "ALPHAPOSE_PRECISION": "int8",
            "ALPHAPOSE_ENGINE": "openvino",
            "ALPHAPOSE_CALIBRATION_DIR": str(calibration),
        }
    )
    before = config.model_record()
    assert config.model_record() == before and before["precision"] == "int8"
    cv2.imwrite(str(frame), np.full((8, 8, 3), 255, np.uint8))
    assert config.model_record()["calibration"] != before["calibration"]
    assert Config.from_env({}).model_record()["calibration"] == "None"  # no set: nothing read
