"""A real CPU out-of-memory (RLIMIT_AS in a child) at micro-batch 4: the run backs off and loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from locations import CHILDREN
from training_helpers import child_env, events, records


@pytest.mark.slow
def test_real_cpu_oom_halves_micro_batch_and_keeps_every_step(tmp_path: Path,
                                                              write_config: Callable[..., Path]) -> None:
    config = write_config(train={"roi_size": [48, 48, 48], "epochs": 2, "effective_batch": 4, "micro_batch": 4,
                                 "sw_batch_size": 1},
                          data={"cache_rate": 1.0, "workers": 0})
    env = {**child_env(), "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
    result = subprocess.run([sys.executable, str(CHILDREN / "rlimit_child.py"), str(config), str(tmp_path / "runs")],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150)
    print(result.stderr[-1500:])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "oom"
    backoffs = events(run_dir, "oom_backoff")
    assert len(backoffs) == 1, backoffs
    assert backoffs[0]["step"] == 0  # during the first step, which was then redone
    assert "cpu_oom" in backoffs[0]["failure"] and "can't allocate memory" in backoffs[0]["failure"]
    assert (backoffs[0]["micro_batch"], backoffs[0]["accumulation"]) == (2, 2)
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == list(range(1, 5))  # 9 training cases // 4 = 2 steps x 2 epochs
    assert all(s["micro_batch"] * s["accumulation"] == 4 for s in steps)  # same effective batch
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["micro_batch"] == 2 and status["accumulation"] == 2
