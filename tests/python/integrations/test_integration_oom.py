"""Each integration under a real CPU out-of-memory (RLIMIT_AS in a child): the run survives, the step count and
effective batch equal an unconstrained run's, and the weights equal that run's, which used micro-batch 2 from the
start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from integration_helpers import EXAMPLES, INTEGRATIONS, child_env, events, final_weights, status, steps
from locations import CHILDREN

HARNESS = CHILDREN / "oom_harness.py"


@pytest.mark.slow
@pytest.mark.parametrize("integration", list(INTEGRATIONS))
def test_a_real_oom_is_backed_off_with_no_sample_lost(tmp_path: Path, integration: str) -> None:
    example, weights_key = INTEGRATIONS[integration]
    args = ["--steps", "4"] if integration == "plain" else ["--epochs", "1"]
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, str(HARNESS), str(EXAMPLES / example), str(runs), *args],
                            env=child_env(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    print(result.stderr[-2000:])
    assert result.returncode == 0, result.stderr[-4000:]
    guarded, small = steps(runs / "guarded"), steps(runs / "small")  # "small": unconstrained, micro-batch 2
    assert [s["step"] for s in guarded] == [s["step"] for s in small] == list(range(1, 5))
    assert [s["samples"] for s in guarded] == [s["samples"] for s in small] == [4] * 4  # the effective batch
    assert all(s["micro_batch"] * s["accumulation"] == 4 for s in guarded)
    assert (guarded[0]["micro_batch"], guarded[0]["accumulation"]) == (2, 2)  # backed off on the first step
    final = status(runs / "guarded")
    assert final["state"] == "finished" and final["step"] == 4 and final["micro_batch"] == 2
    [backoff] = [e for e in events(runs / "guarded") if e["event"] == "oom_backoff"]
    assert backoff["step"] == 0 and "cpu_oom" in backoff["failure"] and "can't allocate memory" in backoff["failure"]
    assert (backoff["micro_batch"], backoff["accumulation"]) == (2, 2)
    assert [s["loss"] for s in guarded] == pytest.approx([s["loss"] for s in small], rel=1e-5)
    reference = final_weights(runs / "small", weights_key)
    for name, value in final_weights(runs / "guarded", weights_key).items():
        torch.testing.assert_close(value, reference[name], rtol=1e-5, atol=1e-6, msg=name)
