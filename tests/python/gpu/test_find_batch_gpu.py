"""`crashguard find-batch` on CUDA: the largest micro-batch whose measured peak (max_memory_reserved over real training
steps, AMP on) stays under a VRAM budget; then that size is run again with the allocator capped at the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from gpu_helpers import GIB, gpu_config, mib, run_json
from locations import CHILDREN
from training_helpers import child_env

pytestmark = pytest.mark.gpu
BUDGET = 4 * GIB


@pytest.mark.gpu_line("find-batch: largest micro-batch under a 4 GiB VRAM budget, its measured peak, rerun capped")
def test_find_batch_finds_the_largest_micro_batch_under_a_vram_budget(
        gpu_data: Path, tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(gpu_config(gpu_data, micro_batch=1, effective_batch=32)))
    out = tmp_path / "find-batch"
    done = subprocess.run([sys.executable, "-m", "crashguard", "find-batch", "--config", str(config),
                           "--device", "cuda", "--budget", str(BUDGET), "--max-micro", "32", "--steps", "1",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=400, env=child_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "find-batch.json").read_text())
    best = report["best_micro_batch"]
    probes = {p["micro_batch"]: p for p in report["probes"]}
    assert best is not None and probes[best]["peak"] <= BUDGET
    over = probes.get(best + 1)
    assert best == 32 or (over is not None and (over["oom"] or over["peak"] > BUDGET))
    capped = run_json([str(CHILDREN / "budget_probe.py"), str(config), str(BUDGET), str(best)], cwd=tmp_path)
    assert capped[str(best)]["oom"] is False  # the chosen size runs with the allocator capped at the budget
    record_property("figures", f"micro-batch {best}: peak {mib(probes[best]['peak'])} of {mib(BUDGET)}; "
                               f"{best + 1}: {'OOM' if over and over['oom'] else mib(over and over['peak'])}; "
                               f"{len(probes)} probes; rerun capped at the budget: fits "
                               f"(peak {mib(capped[str(best)]['peak'])})")
