"""A real CUDA out-of-memory in training, under a VRAM budget (set_per_process_memory_fraction), AMP on: the run
at micro-batch 8 backs off to 4 x 2 and ends with the same steps and effective batch as an unconstrained run.
Then the config's own memory.vram_budget_gb with bfloat16 AMP, clipping and cuDNN's search, through the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpu_helpers import GIB, gpu_config, mib, run_json
from locations import CHILDREN
from training_helpers import crashguard, events, records

pytestmark = pytest.mark.gpu


@pytest.mark.gpu_line("CUDA OOM at micro-batch 8 under a VRAM budget, AMP on: steps and effective batch kept")
def test_a_real_cuda_oom_backs_off_and_loses_no_step(gpu_data: Path, tmp_path: Path,
                                                      record_property: Callable[[str, object], None]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(gpu_config(gpu_data)))
    child = str(CHILDREN / "cuda_budget_train.py")
    capped = run_json([child, str(config), "runs", "capped", "--budget"], cwd=tmp_path, timeout=400)
    free = run_json([child, str(config), "runs", "free"], cwd=tmp_path, timeout=400)
    assert capped["exit_code"] == free["exit_code"] == 0 and capped["amp"] and capped["device"].startswith("cuda")

    backoff = events(tmp_path / "runs" / "capped", "oom_backoff")
    assert len(backoff) == 1, backoff
    assert backoff[0]["step"] == 0 and "cuda_oom" in backoff[0]["failure"]  # the allocator's OutOfMemoryError
    assert (backoff[0]["micro_batch"], backoff[0]["accumulation"]) == (4, 2)
    assert not events(tmp_path / "runs" / "free", "oom_backoff")

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


@pytest.mark.gpu_line("memory.vram_budget_gb from the config caps the run; bfloat16 AMP, clipping, cudnn_benchmark")
def test_the_configs_vram_budget_caps_the_trainer(cuda: Any, gpu_data: Path, tmp_path: Path,
                                                 record_property: Callable[[str, object], None]) -> None:
    total = cuda.cuda.get_device_properties(0).total_memory
    budget_gb = round(total / GIB / 2, 2)  # half the card: the preset's model fits, and the cap is visible
    config = gpu_config(gpu_data, amp_dtype="bfloat16", grad_clip_norm=12.0, cudnn_benchmark=True, max_steps=2,
                        micro_batch=4)
    config["memory"] = {"vram_budget_gb": budget_gb}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = crashguard("train", "--config", str(path), "--runs-dir", str(tmp_path / "runs"), "--run-name", "vram",
                      cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "vram"
    budget = events(run_dir, "vram_budget")
    assert len(budget) == 1 and budget[0]["fraction"] == pytest.approx(budget_gb * GIB / total, abs=1e-4)
    fallback = events(run_dir, "precision_fallback")
    assert len(fallback) == (0 if cuda.cuda.get_device_properties(0).major >= 8 else 1)
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == [1, 2] and all(s["grad_norm"] is not None for s in steps)
    record_property("figures", f"budget {budget_gb:g} GiB of {total / GIB:.1f} GiB (fraction "
                               f"{budget[0]['fraction']}); bfloat16 {'used' if not fallback else 'fell back'}; "
                               f"pre-clip norms {[s['grad_norm'] for s in steps]}; lr {[s['lr'] for s in steps]}")
