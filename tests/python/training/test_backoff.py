"""OOM back-off in the loop: same step redone with the same gradients; at micro-batch 1 a checkpoint and exit 3.

A CUDA OOM cannot happen here (no GPU): it is raised as torch.cuda.OutOfMemoryError from a forward pre-hook,
the one place this suite stands in for the real thing (the real CPU OOM is in test_oom_rlimit.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from training_helpers import events, records

from crashguard.step.backoff import BatchPlan, OutOfMemoryAtMinimum
from crashguard.training.config import load_config
from crashguard.training.run import RunPlace, execute, prepare


def test_batch_plan_keeps_the_effective_batch() -> None:
    plan = BatchPlan(effective=6, micro=4)
    assert plan.accumulation == 2 and [s.stop - s.start for s in plan.chunks()] == [4, 2]
    assert plan.halve() and plan.micro == 2 and plan.accumulation == 3
    assert plan.halve() and plan.halve() is False and plan.micro == 1 and plan.accumulation == 6
    assert sum(s.stop - s.start for s in plan.chunks()) == 6


def oom_above(limit: int) -> Callable[[torch.nn.Module, tuple], None]:
    def hook(_module: torch.nn.Module, args: tuple) -> None:
        if args[0].shape[0] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    return hook


@pytest.fixture
def make_trainer(tmp_path: Path, write_config: Callable[..., Path]):
    torch.set_num_threads(1)

    def make(name: str, memory: dict | None = None, **train: object):
        config = load_config(write_config(f"{name}.json", train={"roi_size": [16, 16, 16], **train},
                                          memory=memory or {}))
        trainer, resumed = prepare(config, RunPlace(tmp_path / "runs", name), resume="never", progress=False)
        return trainer, resumed

    return make


def test_oom_redoes_the_same_step_with_the_same_gradients(make_trainer) -> None:
    guarded, _ = make_trainer("guarded", micro_batch=4)
    reference, _ = make_trainer("reference", micro_batch=2)
    guarded.model.register_forward_pre_hook(oom_above(2))
    guarded.hook.start()
    guarded.data.start_epoch(0)
    batch = next(iter(guarded.data.train_loader))
    loss_guarded = guarded.train_step(batch)
    loss_reference = reference.train_step(batch)
    assert (guarded.plan.micro, guarded.plan.accumulation) == (2, 2)
    assert loss_guarded == pytest.approx(loss_reference, rel=1e-5)
    for a, b in zip(guarded.model.parameters(), reference.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    guarded.metrics.close()
    event = events(guarded.hook.run_dir, "oom_backoff")[0]
    assert "cuda_oom" in event["failure"] and event["micro_batch"] == 2
    status = json.loads((guarded.hook.run_dir / "status.json").read_text())
    assert "micro-batch 4->2" in status["last_event"]


@pytest.mark.slow
def test_oom_at_micro_batch_one_stops_with_a_checkpoint(make_trainer) -> None:
    trainer, resumed = make_trainer("hopeless", micro_batch=2, epochs=3)
    # Fail every forward from the third step on: two steps complete, then nothing fits.
    calls = {"n": 0}

    def hook(_module: torch.nn.Module, args: tuple) -> None:
        if trainer.step >= 2 and trainer.model.training:
            calls["n"] += 1
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    trainer.model.register_forward_pre_hook(hook)
    outcome = execute(trainer, resumed)
    assert outcome.exit_code == 3 and outcome.state == "failed"
    assert "at the smallest batch" in outcome.message and calls["n"] == 2  # tried micro-batch 2, then 1
    assert outcome.checkpoint is not None and outcome.checkpoint.name == "step-00000002.pt"
    status = json.loads((trainer.hook.run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "out of memory" in status["exit_cause"]
    assert status["checkpoint"].endswith("step-00000002.pt")


@pytest.mark.slow
def test_sliding_window_backs_off(make_trainer) -> None:
    trainer, _ = make_trainer("window", sw_batch_size=4, val_at_start=True)
    handle = trainer.model.register_forward_pre_hook(
        lambda m, args: oom_above(1)(m, args) if not m.training else None)
    trainer.hook.start()
    dice = trainer.validate()
    assert trainer.window.sw_batch_size == 1 and dice["mean"] is not None
    handle.remove()
    trainer.model.register_forward_pre_hook(lambda m, args: oom_above(0)(m, args) if not m.training else None)
    with pytest.raises(OutOfMemoryAtMinimum):
        trainer.validate()


def test_ram_over_critical_halves_the_micro_batch_before_an_oom(make_trainer) -> None:
    # Thresholds below any real reading: every step sees "critical" RAM, even after the cleanup.
    trainer, resumed = make_trainer("pressed", micro_batch=4, epochs=1,
                                    memory={"log_ram_fraction": 0.001, "backoff_ram_fraction": 0.001})
    outcome = execute(trainer, resumed)
    assert outcome.exit_code == 0
    backoffs = events(trainer.hook.run_dir, "ram_backoff")
    assert [e["message"].split(": ")[-1] for e in backoffs] == ["micro-batch 4->2", "micro-batch 2->1"]
    steps = records(trainer.hook.run_dir, "step")
    assert [(s["micro_batch"], s["accumulation"]) for s in steps] == [(4, 1), (2, 2)]  # as used
