"""The detector table names each family and network by a word that the detection modules resolve."""

from __future__ import annotations

from alphapose.detection.builders import BUILDERS
from alphapose.detection.detectors import DETECTORS
from alphapose.detection.person_detector import FAMILIES


def test_every_detector_names_a_family_and_a_builder_and_each_serves_a_detector() -> None:
    assert {detector.family for detector in DETECTORS.values()} == set(FAMILIES)
    assert {detector.network for detector in DETECTORS.values()} == set(BUILDERS)
