"""`python -m benchmarks.sample_cost`: the CPU cost of one memory sample, measured on a real process tree."""

from __future__ import annotations

import json
import subprocess
import sys

from locations import REPO


def test_sample_cost_reports_figures() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.sample_cost", "--samples", "50", "--json"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["tree_processes"] == 6 and figures["cpu_ms_mean"] > 0
