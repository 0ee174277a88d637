"""Training under torchrun: one process per rank, ranks agreeing on every decision that changes a collective.

DistributedDataParallel all-reduces gradients *inside* backward. If one rank ran out of memory mid-backward
while the others waited in that all-reduce, they would wait forever. So every micro-batch runs under
`model.no_sync()`, and only after all ranks have all-reduced a "who failed" flag (one small collective per
step) are the gradients all-reduced, by us, in buckets. A failure anywhere makes every rank drop its gradients,
halve the micro-batch together and redo the same step: the world never splits, no rank hangs in a collective,
and the effective (global) batch stays the same. The all-reduce's buffers are allocated before that flag
all-reduce, so an out-of-memory there is agreed on like one in a micro-batch. Stop requests and RAM back-off
are agreed the same way at step boundaries, so every rank stops or halves at the same step.

Collective errors (a peer killed, its connection gone) become `PeerLost`, so a surviving rank ends with a
status and an exit code instead of a traceback or a hang.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..guard.failures import is_oom

log = logging.getLogger(__name__)
T = TypeVar("T")
BUCKET_BYTES = 25 * 2**20  # gradients are all-reduced in buckets of this size (DDP's default bucket size)
# How long a collective may wait for the slowest rank (also covers a rank validating or checkpointing).
DEFAULT_TIMEOUT_S = float(os.environ.get("CRASHGUARD_DIST_TIMEOUT", "600"))


class PeerLost(RuntimeError):
    """A collective failed: another rank died or the group was torn down."""


@dataclass(frozen=True)
class DistEnv:
    """What torchrun tells each process (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def detect(cls, environ: dict[str, str] | None = None) -> DistEnv | None:
        """The torchrun environment, or None for a plain single process."""
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        world = int(env["WORLD_SIZE"])
        return cls(rank=int(env["RANK"]), world_size=world, local_rank=int(env.get("LOCAL_RANK", "0")),
                   local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))))


def _guard(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        def inner(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except RuntimeError as exc:  # DistBackendError and gloo's "Connection closed by peer" alike
                if is_oom(exc):  # this rank's own failure, not a lost peer
                    raise
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise PeerLost(f"{what} failed: {type(exc).__name__}: {first}") from None

        return inner

    return wrap


class Coordinator:
    """The decisions ranks must share. This base class is the single-process world (no collectives)."""

    rank = 0
    world_size = 1
    local_world_size = 1
    distributed = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        return model

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def step_outcome(self, failed: bool, loss: float) -> tuple[list[int], float]:
        """(ranks whose micro-batches failed, the step's loss summed over ranks)."""
        return ([0] if failed else []), loss

    def prepare_reduce(self, parameters: Sequence[torch.Tensor]) -> None:
        """Allocate what `reduce_gradients` needs (called before the step's agreement)."""
        return None

    def reduce_gradients(self, parameters: Sequence[torch.Tensor]) -> None:
        return None

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true if it is true on any rank."""
        return flags

    def reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def broadcast(self, obj: T) -> T:
        """Rank 0's object, on every rank."""
        return obj

    def gather(self, obj: T) -> list[T]:
        return [obj]

    def close(self) -> None:
        return None


class DistCoordinator(Coordinator):
    """A torch.distributed process group started by torchrun (gloo on CPU, NCCL on CUDA unless gloo is chosen)."""

    distributed = True

    def __init__(self, env: DistEnv, device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.env = env
        self.rank, self.world_size, self.local_world_size = env.rank, env.world_size, env.local_world_size
        self.device = device
        self._buffers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}  # reused by every all-reduce
        backend = dist_backend(device)
        if not dist.is_initialized():
            # Binding the rank to its GPU at init is NCCL's (eager connection set-up); gloo takes no device.
            kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        log.info("rank %d of %d (local rank %d), backend %s, device %s", self.rank, self.world_size,
                 env.local_rank, backend, device)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's parameters and buffers now; its in-backward all-reduce is never used (no_sync).
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
        return model.no_sync()  # type: ignore[operator]

    @_guard("the per-step OOM consensus")
    def step_outcome(self, failed: bool, loss: float) -> tuple[list[int], float]:
        flags = torch.zeros(self.world_size + 1, dtype=torch.float64, device=self.device)
        flags[self.rank] = 1.0 if failed else 0.0
        flags[-1] = 0.0 if failed else loss
        dist.all_reduce(flags)
        values = flags.tolist()
        return [r for r in range(self.world_size) if values[r] > 0], float(values[-1])

    def prepare_reduce(self, parameters: Sequence[torch.Tensor]) -> None:
        """One flat buffer per dtype and device, as large as the largest bucket, kept for every later step: the
        all-reduce then allocates nothing of ours after the agreement (an OOM here is agreed on first)."""
        need: dict[tuple[torch.dtype, torch.device], int] = {}
        for bucket in _buckets([p for p in parameters if p.grad is not None]):
            key = (bucket[0].dtype, bucket[0].device)
            need[key] = max(need.get(key, 0), sum(p.numel() for p in bucket))
        for key, numel in need.items():
            held = self._buffers.get(key)
            if held is None or held.numel() < numel:
                self._buffers.pop(key, None)  # the old one goes first: both at once is what may not fit
                self._buffers[key] = torch.empty(numel, dtype=key[0], device=key[1])

    @_guard("the gradient all-reduce")
    def reduce_gradients(self, parameters: Sequence[torch.Tensor]) -> None:
        """Sum the gradients over ranks (each rank weighted its losses by its share of the global batch)."""
        # Parameters without a gradient (unused in this model's forward) are skipped, as the optimizer skips
        # them; every rank runs the same graph, so every rank skips the same ones.
        for bucket in _buckets([p for p in parameters if p.grad is not None]):
            numel = sum(p.numel() for p in bucket)
            held = self._buffers.get((bucket[0].dtype, bucket[0].device))
            grads = [p.grad.reshape(-1) for p in bucket]  # type: ignore[union-attr]
            flat = torch.cat(grads, out=held[:numel]) if held is not None and held.numel() >= numel \
                else torch.cat(grads)
            dist.all_reduce(flat)
            offset = 0
            for p in bucket:
                n = p.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p))  # type: ignore[union-attr]
                offset += n

    @_guard("a step-boundary agreement")
    def agree(self, *flags: bool) -> tuple[bool, ...]:
        values = torch.tensor([1.0 if f else 0.0 for f in flags], dtype=torch.float64, device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(v > 0 for v in values.tolist())

    @_guard("a metric all-reduce")
    def reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        out = values.to(self.device, dtype=torch.float64).clone()
        dist.all_reduce(out)
        return out.cpu()

    @_guard("a broadcast from rank 0")
    def broadcast(self, obj: T) -> T:
        box: list[Any] = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    @_guard("an all-gather")
    def gather(self, obj: T) -> list[T]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        shutdown()


def shutdown() -> None:
    """Leave the process group, if this process joined one (after a lost peer this may fail: ignored)."""
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _buckets(parameters: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    bucket: list[torch.Tensor] = []
    size = 0
    for p in parameters:
        if bucket and (size + p.numel() * p.element_size() > BUCKET_BYTES or p.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.numel() * p.element_size()
    if bucket:
        yield bucket


class NoDeviceForRank(RuntimeError):
    """This rank has no GPU to run on (more ranks on the node than GPUs, with NCCL)."""


def dist_backend(device: torch.device, environ: dict[str, str] | None = None) -> str:
    """NCCL on CUDA, gloo on the CPU. CRASHGUARD_DIST_BACKEND=gloo picks gloo on CUDA too: slower, but ranks may
    then share a GPU (NCCL refuses two ranks on one GPU), e.g. to try DDP on a machine with one GPU."""
    choice = (os.environ if environ is None else environ).get("CRASHGUARD_DIST_BACKEND", "").strip().lower()
    if choice not in ("", "nccl", "gloo"):
        raise NoDeviceForRank(f"CRASHGUARD_DIST_BACKEND={choice!r}: expected nccl or gloo")
    if device.type != "cuda":
        return "gloo"
    return choice or "nccl"


def pick_rank_device(choice: str, env: DistEnv) -> torch.device:
    """cuda:LOCAL_RANK when CUDA is chosen (or auto and present), else the CPU. With gloo on CUDA, ranks beyond
    the node's GPUs share them round-robin; with NCCL that is refused with a clear message."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        count = torch.cuda.device_count()
        index = env.local_rank
        if index >= count:
            if count == 0 or dist_backend(torch.device("cuda")) != "gloo":
                raise NoDeviceForRank(
                    f"local rank {env.local_rank} has no GPU of its own ({count} visible to this process): NCCL "
                    f"needs one GPU per rank. Start at most {count} ranks per node (--nproc_per_node {count}), "
                    f"or set CRASHGUARD_DIST_BACKEND=gloo to let ranks share GPUs")
            index %= count
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def coordinator_for(choice: str) -> tuple[Coordinator, torch.device | None]:
    """The distributed coordinator under torchrun (with its device), else the single-process one."""
    env = DistEnv.detect()
    if env is None:
        return Coordinator(), None
    device = pick_rank_device(choice, env)
    return DistCoordinator(env, device), device


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in order: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
