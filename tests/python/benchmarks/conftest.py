"""The developer benchmarks (benchmarks/ at the repository root, run by `make bench`) are importable here."""

from __future__ import annotations

import sys

from locations import REPO

sys.path.insert(0, str(REPO))
