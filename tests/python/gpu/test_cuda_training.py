"""A real CUDA out-of-memory in training, under a VRAM budget (set_per_process_memory_fraction), AMP on: the run
at micro-batch 8 backs off to 4 x 2 and ends with the same steps and effective batch as an unconstrained run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from gpu_helpers import gpu_config, mib, run_json
from training_helpers import records

pytestmark = pytest.mark.gpu
HERE = Path(__file__).resolve().parent


@pytest.mark.gpu_line("CUDA OOM at micro-batch 8 under a VRAM budget, AMP on: steps and effective batch kept")
def test_a_real_cuda_oom_backs_off_and_loses_no_step(gpu_data: Path, tmp_path: Path,
                                                      record_property: Callable[[str, object], None]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(gpu_config(gpu_data)))
    child = str(HERE / "cuda_budget_train.py")
    capped = run_json([child, str(config), "runs", "capped", "--budget"], cwd=tmp_path, timeout=400)
    free = run_json([child, str(config), "runs", "free"], cwd=tmp_path, timeout=400)
    assert capped["exit_code"] == free["exit_code"] == 0 and capped["amp"] and capped["device"].startswith("cuda")

    backoff = [r for r in records(tmp_path / "runs" / "capped", "event") if r["event"] == "oom_backoff"]
    assert len(backoff) == 1, backoff
    assert backoff[0]["step"] == 0 and "cuda_oom" in backoff[0]["failure"]  # the allocator's OutOfMemoryError
    assert (backoff[0]["micro_batch"], backoff[0]["accumulation"]) == (4, 2)
    assert not [r for r in records(tmp_path / "runs" / "free", "event") if r["event"] == "oom_backoff"]

    capped_steps = records(tmp_path / "runs" / "capped", "step")
    free_steps = records(tmp_path / "runs" / "free", "step")
    assert [s["step"] for s in capped_steps] == [s["step"] for s in free_steps] == \
        list(range(1, len(free_steps) + 1)) and len(free_steps) >= 2
    assert all((s["micro_batch"], s["accumulation"]) == (4, 2) for s in capped_steps)
    assert all((s["micro_batch"], s["accumulation"]) == (8, 1) for s in free_steps)
    # Same model, same samples: step 1's loss agrees to fp16 rounding however the batch is split.
    assert capped_steps[0]["loss"] == pytest.approx(free_steps[0]["loss"], rel=2e-2)
    assert capped["max_reserved"] <= capped["budget"] * 1.001  # the cap held (to the allocator's rounding)
    record_property("figures", f"budget {mib(capped['budget'])} between the peaks at micro-batch 4 "
                               f"({mib(capped['peak4'])}) and 8 ({mib(capped['peak8'])}); {len(capped_steps)} "
                               f"steps of 8 as 4 x 2 vs {len(free_steps)} as 8 x 1; step-1 loss "
                               f"{capped_steps[0]['loss']:.4f} vs {free_steps[0]['loss']:.4f}; AMP scale "
                               f"{capped['scale']:g}; max reserved {mib(capped['max_reserved'])}")
