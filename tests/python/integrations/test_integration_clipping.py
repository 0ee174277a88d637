"""grad_clip_norm through the MONAI handler and the Lightning callback: one real step each, where SGD at lr 1 makes
the weights' change equal to the clipped gradient, so its norm is the clip and the norm recorded is the larger one
before clipping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from integration_helpers import child_env
from locations import CHILDREN

CHILD = CHILDREN / "clipping_child.py"
CLIP = 1e-3


@pytest.mark.slow
def test_the_handler_and_the_callback_clip_the_step_they_guard(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    result = subprocess.run([sys.executable, str(CHILD), str(runs), str(CLIP)], env=child_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((runs / "clipping.json").read_text())
    for integration in ("monai", "lightning"):
        step = measured[integration]
        assert step["grad_norm"] > 10 * CLIP, (integration, step)  # there was something to clip
        assert step["update_norm"] == pytest.approx(CLIP, rel=1e-3), (integration, step)
