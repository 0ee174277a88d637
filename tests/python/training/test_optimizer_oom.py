"""Out-of-memory in the optimizer step (issue 14): a real CPU OOM in AdamW's first update survives, with the same
weights as a run that never ran out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from locations import CHILDREN
from training_helpers import child_env


@pytest.mark.slow
def test_a_real_oom_in_the_first_optimizer_update_is_undone_and_retried(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, str(CHILDREN / "optimizer_oom_child.py"), str(runs)],
                            env={**child_env(), "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"},
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    print(result.stderr[-1500:])
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in (runs / "guarded" / "events.jsonl").read_text().splitlines()]
    [backoff] = [e for e in events if e["event"] == "optimizer_backoff"]
    assert backoff["step"] == 0 and "cpu_oom" in backoff["failure"] and "can't allocate memory" in backoff["failure"]
    assert "one parameter at a time" in backoff["message"]
    assert not [e for e in events if e["event"] == "oom_backoff"]  # the forward/backward always fitted
    status = json.loads((runs / "guarded" / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 3
    guarded = torch.load(runs / "guarded" / "checkpoints" / "step-00000003.pt", weights_only=True)["model"]
    reference = torch.load(runs / "reference" / "checkpoints" / "step-00000003.pt", weights_only=True)["model"]
    for name, value in guarded.items():
        torch.testing.assert_close(value, reference[name], rtol=1e-6, atol=1e-7, msg=name)
