"""The guarded optimizer step: the one place for the batch plan, micro-batch accumulation, the OOM back-off, the
agreement between ranks and the lock around the parameter update.

Crash Guard's trainer, the MONAI/Ignite handler, the Lightning callback and `guarded_run` all step through it. It
needs torch only (no MONAI).

A step's samples are split into micro-batches whose losses are weighted by their share of the step, so the
gradients do not depend on the split. An out-of-memory anywhere before the parameters change (forward, backward,
the all-reduce's buffers, the optimizer's new state) is caught, the failed attempt's memory is released outside
the `except` block (its traceback holds tensors), and the *same* step is redone: with half the micro-batch after a
forward/backward failure, with a leaner optimizer update after an update failure. The optimizer's first update,
which allocates its state (AdamW: two tensors per parameter), is undone if it fails half-way. Under torchrun every
rank learns who failed before any gradient leaves a rank, so all ranks back off together and none waits in a
collective.

A retry starts from torch's RNG state at the step's start, so it draws the same random numbers (dropout masks) as
a run that used the smaller micro-batch from the start. Parameters change only in the optimizer's update, which
runs under `lock` together with the step counter and the
RNG state of the step boundary: a thread holding the lock sees the model and optimizer of the last completed step
(the urgent stop writes its checkpoint this way, without waiting for the step in flight).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..guard.cleanup import CleanupReport, emergency_cleanup
from ..guard.failures import Failure, FailureKind, describe_failure, is_oom
from .backoff import BatchPlan, OutOfMemoryAtMinimum
from .batches import batch_size, take
from .checkpoint import rng_state
from .distributed import Coordinator

LossOf = Callable[[Any], torch.Tensor]  # a micro-batch -> its mean loss (a scalar tensor with a graph)
EventSink = Callable[[str, str, dict[str, Any]], None]  # (kind, message, fields)
FORWARD_BACKWARD = "forward/backward"
UPDATE = "optimizer update"


@dataclass(frozen=True)
class StepResult:
    loss: float  # the step's mean loss (over every rank's samples under torchrun)
    samples: int  # samples of this rank in the step
    micro_batch: int  # as used in this step
    accumulation: int
    grad_norm: float | None = None  # the total gradient norm before clipping (when grad_clip_norm is set)


class _Snapshot:
    """The parameters (and any optimizer state) before an update that creates optimizer state, to undo it."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> None:
        self.params = [(p, p.detach().clone()) for p in params]
        state = optimizer.state
        self.fresh = [p for p in params if not state.get(p)]
        self.kept = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state[p].items()}
                     for p in params if state.get(p)}

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        with torch.no_grad():
            for param, saved in self.params:
                param.copy_(saved)
        for param in self.fresh:
            optimizer.state.pop(param, None)
        for param, saved_state in self.kept.items():
            optimizer.state[param] = {k: v.clone() if isinstance(v, torch.Tensor) else v
                                      for k, v in saved_state.items()}


def _torch_rng() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """torch's CPU and CUDA generator states: what a model's forward draws from (dropout). Cheap (~5 µs), unlike
    the full rng_state() whose numpy part costs ~0.3 ms."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _restore_torch_rng(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def uses_foreach(group: dict[str, Any]) -> bool:
    """Whether torch's optimizer will take its multi-tensor path for this group (temporaries for every parameter
    at once; torch's default on CUDA), as opposed to one parameter at a time or a fused kernel."""
    if group.get("fused"):
        return False
    foreach = group.get("foreach")
    if foreach is None:
        return all(p.is_cuda for p in group["params"])
    return bool(foreach)


class GuardedStep:
    """One optimizer step at a time, out-of-memory proof before the parameters change.

    `micro_batch`: the most samples per forward/backward (None: the whole batch until an OOM says otherwise).
    `expected_batch`: if set, every step must have exactly this many samples (Crash Guard's trainer).
    `sync_model`: the DistributedDataParallel module whose gradient sync is held off (torchrun only).
    `backward`/`optimizer_step`: how to run them (Lightning's manual_backward and LightningOptimizer.step);
    default `loss.backward()` (through `scaler`, if given) and `optimizer.step()`.
    `grad_clip_norm`: clip the total gradient norm to this, once per step on the final gradients: after the
    accumulation, the GradScaler's unscale and the all-reduce, before the update (a retried step clips its own
    gradients, which equal an unconstrained attempt's).
    `before_update`: called with the final gradients (after any clipping), before the update.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, micro_batch: int | None = None,
                 expected_batch: int | None = None, coord: Coordinator | None = None,
                 sync_model: torch.nn.Module | None = None, scaler: torch.amp.GradScaler | None = None,
                 backward: Callable[[torch.Tensor], None] | None = None,
                 optimizer_step: Callable[[], Any] | None = None,
                 before_update: Callable[[], None] | None = None, on_event: EventSink | None = None,
                 cleanup: Callable[[], CleanupReport] = emergency_cleanup, record_rng: bool = True,
                 grad_clip_norm: float | None = None) -> None:
        if grad_clip_norm is not None and not grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be positive, got {grad_clip_norm}")
        self.optimizer = optimizer
        self.coord = coord or Coordinator()
        self.sync_model = sync_model
        self.scaler = scaler
        self.expected_batch = expected_batch
        self.plan = BatchPlan(effective=expected_batch or 0, micro=micro_batch or 2**62)
        self._backward = backward
        self._optimizer_step = optimizer_step
        self.before_update = before_update
        self.grad_clip_norm = grad_clip_norm
        self.on_event = on_event
        self.cleanup = cleanup
        self.record_rng = record_rng
        self.lock = threading.Lock()
        self.completed = 0  # optimizer steps completed (set it when resuming)
        self.boundary_rng: dict[str, Any] | None = rng_state() if record_rng else None
        self._snapshot: _Snapshot | None = None
        self._update_retried = False

    # -- the step ---------------------------------------------------------------------------------
    def run(self, batch: Any, loss_of: LossOf, on_commit: Callable[[StepResult], None] | None = None,
            on_attempt: Callable[[], None] | None = None) -> StepResult:
        """Forward/backward over the batch's micro-batches, then the update; redone from the start after an OOM.
        `on_commit` runs under the lock right after the update: the caller's record of the step (a metrics line,
        a data position) is then never missing from, nor ahead of, what a thread holding the lock sees.
        `on_attempt` runs before each attempt (a caller collecting per-micro-batch outputs starts afresh)."""
        n = batch_size(batch)
        if self.expected_batch is not None and n != self.expected_batch:
            raise RuntimeError(f"a step got {n} samples, expected {self.expected_batch}")
        self.plan.effective = n
        step_rng = _torch_rng() if self.record_rng else None
        self.optimizer.zero_grad(set_to_none=True)  # gradients left from outside the step would be summed in
        while True:
            failure: Failure | None = None
            phase = FORWARD_BACKWARD
            loss = 0.0
            if on_attempt is not None:
                on_attempt()
            try:
                # Under DDP no micro-batch synchronises gradients: an OOM here leaves no rank in a collective.
                sync_off = self.coord.no_sync(self.sync_model) if self.sync_model is not None \
                    else contextlib.nullcontext()
                with sync_off:
                    loss = self.accumulate(batch, loss_of)
                phase = UPDATE
                self._prepare_update()
            except Exception as exc:
                if not is_oom(exc):
                    raise
                failure = describe_failure(exc)
            # Every rank learns who failed before any gradient leaves a rank (one small all-reduce per step).
            failed_ranks, loss = self.coord.step_outcome(failure is not None, loss)
            if not failed_ranks:
                break
            # Out of the except block: the failed attempt's activations are unreachable now.
            self._drop_attempt()
            self.cleanup()
            self._back_off(failure, phase, failed_ranks)
            if step_rng is not None:  # the retry draws what the first attempt drew (dropout masks, ...)
                _restore_torch_rng(step_rng)
        self.coord.reduce_gradients(self.parameters())
        grad_norm = self._clip() if self.grad_clip_norm is not None else None
        if self.before_update is not None:
            self.before_update()
        result = StepResult(loss, n, self.plan.used_micro, self.plan.accumulation, grad_norm)
        with self.lock:
            self._update()
            self.completed += 1
            if self.record_rng:
                self.boundary_rng = rng_state()
            if on_commit is not None:
                on_commit(result)
        return result

    def accumulate(self, batch: Any, loss_of: LossOf) -> float:
        """Forward and backward over the micro-batches; the gradients sum to the whole step's (public for
        calibration and benchmarks). Returns this rank's share of the step's mean loss."""
        n = self.plan.effective = batch_size(batch)
        world = self.coord.world_size
        total = 0.0
        for part in self.plan.chunks():
            loss = loss_of(take(batch, part, n))
            if loss.ndim:
                loss = loss.mean()
            # Weighted by the share of the *global* step: the ranks' gradients then sum to the step's.
            weighted = loss * ((part.stop - part.start) / (n * world))
            self.backward(weighted)
            total += float(weighted.detach())
            del loss, weighted
        return total

    def backward(self, loss: torch.Tensor) -> None:
        if self._backward is not None:
            self._backward(loss)
        elif self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _clip(self) -> float:
        """Clip the final gradients' total norm to grad_clip_norm; returns the norm before clipping. Under a
        GradScaler the gradients are unscaled first (the scaler's step then does not unscale them again; a
        step with inf/NaN gradients is still skipped by it). Clipping works in place on tiny temporaries."""
        assert self.grad_clip_norm is not None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # a no-op for a disabled scaler
        return float(torch.nn.utils.clip_grad_norm_(self.parameters_with_grads(), self.grad_clip_norm))

    def parameters(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def parameters_with_grads(self) -> list[torch.Tensor]:
        return [p for p in self.parameters() if p.grad is not None]

    # -- before the agreement: everything the update will allocate ---------------------------------
    def _prepare_update(self) -> None:
        params = self.parameters_with_grads()
        self.coord.prepare_reduce(params)
        if any(not self.optimizer.state.get(p) for p in params):
            self._snapshot = _Snapshot(self.optimizer, params)  # this update creates optimizer state
        else:
            self._probe(params)

    def _probe(self, params: list[torch.Tensor]) -> None:
        """Allocate, and free at once, what the update's temporaries will take: an OOM now costs nothing, while
        one inside a later update (the state exists, no snapshot) could leave it half-applied. On CUDA the freed
        block stays in torch's cache for the update to use."""
        need: dict[torch.device, int] = {}
        for group in self.optimizer.param_groups:
            sizes = [p.numel() * p.element_size() for p in group["params"] if p.grad is not None]
            if not sizes:
                continue
            device = next(p.device for p in group["params"] if p.grad is not None)
            need[device] = need.get(device, 0) + (sum(sizes) if uses_foreach(group) else max(sizes))
        for device, nbytes in need.items():
            del_me = torch.empty(nbytes, dtype=torch.uint8, device=device)
            del del_me

    # -- the update, under the lock -----------------------------------------------------------------
    def _update(self) -> None:
        while True:
            failure: Failure | None = None
            try:
                self._step_optimizer()
            except Exception as exc:
                if not is_oom(exc):
                    raise
                failure = describe_failure(exc)
            failed = failure is not None
            if self._snapshot is not None and self.coord.distributed:
                (failed,) = self.coord.agree(failed)  # one rank's failed update is undone on every rank
            if not failed:
                break
            failure = failure or Failure(FailureKind.MEMORY_ERROR, "unknown", "out of memory on another rank")
            if self._snapshot is None:
                raise OutOfMemoryAtMinimum("the optimizer's update, which failed half-way and cannot be undone",
                                           failure, weights_intact=False, limit="(the weights are torn)")
            self._snapshot.restore(self.optimizer)
            self.cleanup()
            if not self._leaner_update(failure):
                raise OutOfMemoryAtMinimum("the optimizer's update", failure, limit="at its leanest")
        if self.scaler is not None:
            self.scaler.update()
        self._snapshot = None
        self._update_retried = False
        self.optimizer.zero_grad(set_to_none=True)

    def _step_optimizer(self) -> None:
        if self._optimizer_step is not None:
            self._optimizer_step()
        elif self.scaler is not None:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()

    # -- back-off -------------------------------------------------------------------------------------
    def _drop_attempt(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._snapshot = None

    def _back_off(self, failure: Failure | None, phase: str, failed_ranks: list[int]) -> None:
        coord = self.coord
        if coord.distributed:  # every rank takes the same decision, from every rank's failure
            reports = [r for r in coord.gather((failure, phase)) if r[0] is not None]
            failure = reports[0][0] if reports else failure
            phase = FORWARD_BACKWARD if any(p == FORWARD_BACKWARD for _, p in reports) else UPDATE
        failure = failure or Failure(FailureKind.MEMORY_ERROR, "unknown", "out of memory on another rank")
        where = f" on rank {', '.join(map(str, failed_ranks))}" if coord.distributed else ""
        if phase == UPDATE:
            if not self._leaner_update(failure, where):
                raise OutOfMemoryAtMinimum(f"the optimizer's update{where}", failure, limit="at its leanest")
            return
        old = self.plan.used_micro
        if not self.plan.halve():
            raise OutOfMemoryAtMinimum(f"training step{where}", failure)
        every = f" on all {coord.world_size} ranks" if coord.distributed else ""
        extra: dict[str, Any] = {"ranks": failed_ranks} if coord.distributed else {}
        self._event("oom_backoff", f"{failure.kind.value}{where} at step {self.completed + 1}: micro-batch {old}->"
                    f"{self.plan.used_micro}, accumulation {self.plan.accumulation}{every}, effective batch "
                    f"{self.plan.effective * coord.world_size} kept; retrying the same step",
                    failure=failure.describe(), micro_batch=self.plan.used_micro,
                    accumulation=self.plan.accumulation, **extra)

    def _leaner_update(self, failure: Failure, where: str = "") -> bool:
        """Make the next update attempt need less memory: first the optimizer's one-parameter-at-a-time path
        instead of its multi-tensor one (torch's default on CUDA), else one more try after the cleanup."""
        groups = [g for g in self.optimizer.param_groups if uses_foreach(g)]
        if groups:
            for group in groups:
                group["foreach"] = False
            how = "one parameter at a time (foreach off)"
        elif not self._update_retried:
            self._update_retried = True
            how = "once more after the cleanup"
        else:
            return False
        self._event("optimizer_backoff", f"{failure.kind.value}{where} in the optimizer's update at step "
                    f"{self.completed + 1}: retrying it {how}; no sample is lost", failure=failure.describe())
        return True

    def _event(self, kind: str, message: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, message, fields)
