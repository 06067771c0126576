"""Where the tests find the checkout and their data, wherever a test module sits under tests/."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_DATA = REPO / "tests" / "data"
GOLDEN_DATA = REPO / "tests" / "golden" / "data"
