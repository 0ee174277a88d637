"""Where the test suite's files are: the repository, the child scripts the tests start as processes, the examples."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parents[1]
CHILDREN = TESTS / "children"
EXAMPLES = REPO / "examples"
