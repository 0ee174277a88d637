"""Run a real training under RLIMIT_AS: micro-batch 2 fits, micro-batch 4 does not (a real CPU OOM).

usage: rlimit_child.py CONFIG RUNS_DIR

The limit is calibrated here, on this machine, after a warm-up micro-batch-2 step: the smallest
address-space headroom over the current size in which a micro-batch-2 forward/backward succeeds, plus 40%
and 48 MiB (optimizer state, validation). Freed heap stays mapped, so micro-batch 2 needs little new
address space after the warm-up, while micro-batch 4 needs its extra activations (~100 MiB at 48^3), more
than the headroom. The test also fixes MALLOC_MMAP_THRESHOLD_ so big tensors are mapped and unmapped, not
kept in the heap by glibc's sliding threshold, and MALLOC_ARENA_MAX=1 so the urgent-stop watcher thread's first malloc
does not reserve a 64 MiB arena of address space. Calibration runs forward/backward only (gradients cleared,
no optimizer step), so the training run itself is unchanged.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

import torch

from crashguard.guard.cleanup import emergency_cleanup
from crashguard.guard.failures import is_oom
from crashguard.training.config import load_config
from crashguard.training.run import RunPlace, execute, prepare

MIB = 2**20


def vm_size() -> int:
    return int(re.search(r"VmSize:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def fits(trainer, batch, micro: int, headroom: int) -> bool:
    trainer.plan.micro = micro
    emergency_cleanup()  # gc + malloc_trim: free heap must not count as headroom
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom, resource.RLIM_INFINITY))
    ok = True
    try:
        trainer.guarded.accumulate({"image": batch["image"], "label": batch["label"]}, trainer._loss_of)
    except Exception as exc:
        if not is_oom(exc):
            raise
        ok = False
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        trainer.optimizer.zero_grad(set_to_none=True)
    return ok


def main() -> int:
    config = load_config(sys.argv[1])
    trainer, resumed = prepare(config, RunPlace(Path(sys.argv[2]), "oom"), resume="never", progress=False)
    trainer.data.start_epoch(0)
    batch = next(iter(trainer.data.train_loader))
    fits(trainer, batch, 2, 4096 * MIB)  # warm-up: first-call allocations (thread pools, kernels) happen now
    low, high = 0, 2048 * MIB  # smallest headroom (to 8 MiB) in which micro-batch 2 fits
    if not fits(trainer, batch, 2, high):
        print("calibration failed: micro-batch 2 needs more than 2 GiB", file=sys.stderr)
        return 10
    while high - low > 8 * MIB:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(trainer, batch, 2, mid) else (mid, high)
    headroom = int(high * 1.4) + 48 * MIB  # + optimizer state and the validation pass
    if fits(trainer, batch, 4, headroom):
        print(f"calibration failed: micro-batch 4 fits in {headroom / MIB:.0f} MiB", file=sys.stderr)
        return 11
    trainer.plan.micro = config.train.micro_batch
    torch.manual_seed(config.train.seed)
    limit = vm_size() + headroom
    print(f"RLIMIT_AS = VmSize + {headroom / MIB:.0f} MiB (micro-batch 2 needs {high / MIB:.0f} MiB)",
          file=sys.stderr)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    return execute(trainer, resumed).exit_code


if __name__ == "__main__":
    sys.exit(main())
