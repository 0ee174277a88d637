"""The guarded step on its own (torch only): micro-batch splitting, the same step redone after an OOM with the same
gradients and random numbers, and an optimizer update that fails half-way undone and retried leaner.

A CUDA OOM cannot happen here (no GPU): it is raised as torch.cuda.OutOfMemoryError, the one stand-in this suite
uses (the real CPU OOMs are in test_oom_rlimit.py, test_optimizer_oom.py and the integration tests)."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time

import pytest
import torch
from torch import nn

from crashguard.step.backoff import OutOfMemoryAtMinimum
from crashguard.step.batches import batch_size, take
from crashguard.step.guarded_step import GuardedStep, uses_foreach

Pair = collections.namedtuple("Pair", ["image", "label"])


def test_take_splits_every_per_sample_value_and_keeps_the_rest() -> None:
    batch = {"image": torch.arange(8).view(4, 2), "label": Pair(torch.arange(4), torch.zeros(4, 3)),
             "names": ["a", "b", "c", "d"], "spacing": 1.5, "pair": (torch.ones(4), torch.ones(4))}
    assert batch_size(batch) == 4
    part = take(batch, slice(1, 3), 4)
    assert part["image"].tolist() == [[2, 3], [4, 5]] and part["names"] == ["b", "c"] and part["spacing"] == 1.5
    assert isinstance(part["label"], Pair) and part["label"].image.tolist() == [1, 2]
    assert part["pair"][0].shape == (2,)
    with pytest.raises(TypeError, match="cannot find a tensor"):
        batch_size({"names": ["a"]})


def model_and_data(seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout3d(0.3), nn.Conv3d(4, 1, 1))
    data = {"image": torch.randn(4, 1, 8, 8, 8), "label": (torch.rand(4, 1, 8, 8, 8) > 0.5).float()}
    return model, data


def loss_for(model: nn.Module):
    return lambda b: nn.functional.binary_cross_entropy_with_logits(model(b["image"]), b["label"])


def oom_above(limit: int):
    def hook(_module: nn.Module, args: tuple) -> None:
        if args[0].shape[0] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (raised by the test)")

    return hook


@pytest.mark.parametrize("clip", [None, 0.02])
def test_an_oom_redoes_the_same_step_like_the_smaller_micro_batch_from_the_start(clip: float | None) -> None:
    guarded_model, data = model_and_data()
    reference_model, _ = model_and_data()
    guarded_model.register_forward_pre_hook(oom_above(2))
    events: list[tuple[str, str]] = []
    guarded = GuardedStep(torch.optim.AdamW(guarded_model.parameters(), lr=0.01), micro_batch=4,
                          on_event=lambda kind, message, fields: events.append((kind, message)), grad_clip_norm=clip)
    reference = GuardedStep(torch.optim.AdamW(reference_model.parameters(), lr=0.01), micro_batch=2,
                            grad_clip_norm=clip)
    for _ in range(2):
        torch.manual_seed(7)  # same RNG before each step in both runs: dropout draws from it
        a = guarded.run(data, loss_for(guarded_model))
        torch.manual_seed(7)
        b = reference.run(data, loss_for(reference_model))
        assert a.loss == pytest.approx(b.loss, rel=1e-6)
        # With clipping: the retried step clipped the same gradients (same norm) as the unconstrained one.
        assert a.grad_norm == b.grad_norm and (a.grad_norm is None) == (clip is None)
        assert clip is None or a.grad_norm > clip  # the clip acted
    assert (a.micro_batch, a.accumulation, guarded.completed) == (2, 2, 2)
    assert [k for k, _ in events] == ["oom_backoff"] and "micro-batch 4->2" in events[0][1]
    for p, q in zip(guarded_model.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)  # bit for bit: same ops, same dropout masks


class TornAdamW(torch.optim.AdamW):
    """AdamW whose multi-tensor update runs out of memory half-way, after changing half the parameters (what a
    CUDA OOM in `_foreach_sqrt` does after the in-place decay and moment updates)."""

    def step(self, closure=None):  # type: ignore[override]
        if any(uses_foreach(g) for g in self.param_groups):
            with torch.no_grad():
                params = [p for g in self.param_groups for p in g["params"]]
                for p in params[: len(params) // 2]:
                    p.mul_(0.5)
                    self.state[p]["step"] = torch.tensor(1.0)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB (raised by the test)")
        return super().step(closure)


def test_a_first_update_that_fails_half_way_is_undone_and_retried_one_parameter_at_a_time() -> None:
    guarded_model, data = model_and_data()
    reference_model, _ = model_and_data()
    events: list[str] = []
    guarded = GuardedStep(TornAdamW(guarded_model.parameters(), lr=0.01, foreach=True),
                          on_event=lambda kind, message, fields: events.append(kind))
    reference = GuardedStep(torch.optim.AdamW(reference_model.parameters(), lr=0.01, foreach=False))
    torch.manual_seed(3)
    guarded.run(data, loss_for(guarded_model))
    torch.manual_seed(3)
    reference.run(data, loss_for(reference_model))
    assert events == ["optimizer_backoff"] and guarded.optimizer.param_groups[0]["foreach"] is False
    for p, q in zip(guarded_model.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert all(int(s["step"]) == 1 for s in guarded.optimizer.state.values())  # no doubled state


def test_a_later_update_torn_half_way_is_reported_and_not_saved() -> None:
    model, data = model_and_data()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, foreach=False)
    step = GuardedStep(optimizer)
    step.run(data, loss_for(model))  # the state exists now: no snapshot for later updates
    for group in optimizer.param_groups:
        group["foreach"] = True
    optimizer.__class__ = TornAdamW
    with pytest.raises(OutOfMemoryAtMinimum) as caught:
        step.run(data, loss_for(model))
    assert caught.value.weights_intact is False and "cannot be undone" in str(caught.value)
    assert step.completed == 1


def test_a_thread_holding_the_lock_sees_the_last_completed_step() -> None:
    model, data = model_and_data()
    step = GuardedStep(torch.optim.SGD(model.parameters(), lr=0.1))
    seen: list[tuple[int, float]] = []
    step.lock.acquire()
    runner = threading.Thread(target=step.run, args=(data, loss_for(model)))
    runner.start()
    time.sleep(0.5)  # forward and backward are done; the update waits for the lock
    seen.append((step.completed, float(next(model.parameters()).detach().sum())))
    before = float(next(model.parameters()).detach().sum())
    step.lock.release()
    runner.join(10)
    assert seen == [(0, before)] and step.completed == 1
    assert float(next(model.parameters()).detach().sum()) != before


def test_importing_crashguard_never_imports_torch() -> None:
    code = "import sys, crashguard; assert 'torch' not in sys.modules, 'torch imported'; print(crashguard.__all__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "guarded_run" in result.stdout


def _total_norm(model: nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


def test_clipping_bounds_the_final_gradients_after_the_scalers_unscale() -> None:
    """The total norm the update sees is at most grad_clip_norm; under a GradScaler it is the true (unscaled)
    gradients that are clipped: same pre-clip norm and same clipped gradients as without a scaler."""
    seen: dict[str, tuple[float, float | None]] = {}
    for name, scaler in (("plain", None), ("scaled", torch.amp.GradScaler("cpu", init_scale=2.0**10))):
        model, data = model_and_data()
        after: list[float] = []
        step = GuardedStep(torch.optim.SGD(model.parameters(), lr=0.1), scaler=scaler, grad_clip_norm=0.01,
                           before_update=lambda model=model, after=after: after.append(_total_norm(model)))
        torch.manual_seed(7)
        result = step.run(data, loss_for(model))
        assert result.grad_norm is not None and result.grad_norm > 0.01 and after[0] <= 0.01 * (1 + 1e-5)
        seen[name] = (after[0], result.grad_norm)
    assert seen["scaled"][0] == pytest.approx(seen["plain"][0], rel=1e-5)
    assert seen["scaled"][1] == pytest.approx(seen["plain"][1], rel=1e-5)
    with pytest.raises(ValueError, match="grad_clip_norm"):
        GuardedStep(torch.optim.SGD(model.parameters(), lr=0.1), grad_clip_norm=0.0)
