"""The settings table: the README's table, the flags and the SDK parameters are all made from it."""

from __future__ import annotations

from repo_paths import REPO

from alphapose.cvat.settings import (
    BY_NAME,
    FLAGS,
    SETTINGS,
    Config,
    readme_block,
    readme_table,
    setting_flags,
)
from alphapose.options import PipelineOptions
from tools.cli import build_parser

README = REPO / "README.md"


def test_the_readme_table_is_the_settings_table() -> None:
    # python -m tools.readme writes it; a row changed in either place fails here
    assert readme_block(README.read_text()) == readme_table()


def test_every_setting_has_one_row_and_pipeline_defaults_are_pipeline_options() -> None:
    assert len(BY_NAME) == len(SETTINGS)
    defaults = PipelineOptions()
    for setting in SETTINGS:
        if hasattr(defaults, setting.name):
            assert setting.default == getattr(defaults, setting.name)
    assert Config().options == defaults


def test_each_command_takes_the_setting_flags_of_the_table() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in ("predict", "annotate-task", "evaluate"):
        taken = {flag for action in commands[name]._actions for flag in action.option_strings}
        assert set(FLAGS) <= taken, name
    args = parser.parse_args(["predict", "x.png", "--device", "cpu", "--flip", "--calibration", "cal"])
    given = setting_flags(args)
    assert given == {"--device": "cpu", "--flip": "1", "--calibration": "cal"}
    config = Config.from_env({}, flags=given)
    assert (config.options.device, config.options.flip, str(config.options.calibration)) == (
        "cpu",
        True,
        "cal",
    )
