"""The preset table names each network by a word that the builders' module resolves."""

from __future__ import annotations

from alphapose.pose.models.builders import BUILDERS
from alphapose.pose.presets import PRESETS


def test_every_preset_names_a_builder_and_every_builder_serves_a_preset() -> None:
    assert {preset.network for preset in PRESETS.values()} == set(BUILDERS)
