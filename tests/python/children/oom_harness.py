"""Run an example twice in this process: unconstrained at micro-batch 2, then at micro-batch 4 under an RLIMIT_AS in
which micro-batch 2 fits and 4 does not (a real CPU "can't allocate memory").

usage: oom_harness.py EXAMPLE RUNS_DIR [EXAMPLE ARGS...]

The limit is calibrated here, after the warm run (lazy imports and first-call allocations are done): the
smallest address-space headroom over the current size in which a forward/backward of the example's model fits, at
micro-batch 2 and at 4; the limit is halfway between, the widest margin either way. As in
tests/python/training/rlimit_child.py, MALLOC_MMAP_THRESHOLD_ is fixed by the caller so big tensors are unmapped
when freed, and MALLOC_ARENA_MAX=1 so a thread's first malloc (the urgent-stop watcher's) does not reserve a
64 MiB arena of address space.
"""

from __future__ import annotations

import importlib.util
import re
import resource
import sys
from pathlib import Path
from types import ModuleType

import torch

from crashguard.guard.cleanup import emergency_cleanup
from crashguard.guard.failures import is_oom
from crashguard.step.guarded_step import GuardedStep

MIB = 2**20


def vm_size() -> int:
    return int(re.search(r"VmSize:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def load(path: Path) -> ModuleType:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fits(tiny3d: ModuleType, micro: int, headroom: int) -> bool:
    model = tiny3d.build_model()
    step = GuardedStep(torch.optim.SGD(model.parameters(), lr=0.0), micro_batch=micro, record_rng=False)
    batch = tiny3d.batch_for(0)
    emergency_cleanup()  # gc + malloc_trim: free heap must not count as headroom
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom, resource.RLIM_INFINITY))
    try:
        step.accumulate(batch, lambda b: tiny3d.LOSS(model(b["image"]), b["label"]))
        return True
    except Exception as exc:
        if not is_oom(exc):
            raise
        return False
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def need(tiny3d: ModuleType, micro: int, low: int = 0) -> int | None:
    """The smallest address-space headroom (to 8 MiB, above `low`) in which a forward/backward at `micro` fits."""
    high = 1024 * MIB
    if not fits(tiny3d, micro, high):
        return None
    while high - low > 8 * MIB:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(tiny3d, micro, mid) else (mid, high)
    return high


def main() -> int:
    example, runs_dir, extra = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    module = load(example)
    common = ["--runs-dir", runs_dir, *extra]
    assert module.main([*common, "--name", "small", "--micro-batch", "2"]) == 0  # unconstrained, and the warm-up
    tiny3d = sys.modules["tiny3d"]
    need2 = need(tiny3d, 2)
    need4 = need(tiny3d, 4, low=need2) if need2 is not None else None
    if need2 is None or need4 is None or need4 - need2 < 32 * MIB:
        print(f"calibration failed: micro-batch 2 needs {need2}, 4 needs {need4}", file=sys.stderr)
        return 10
    headroom = (need2 + need4) // 2  # the widest margin on both sides (thread stacks, heap growth, the update)
    emergency_cleanup()
    print(f"RLIMIT_AS = VmSize + {headroom / MIB:.0f} MiB (micro-batch 2 needs {need2 / MIB:.0f} MiB, "
          f"4 needs {need4 / MIB:.0f} MiB)", file=sys.stderr)
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom, resource.RLIM_INFINITY))
    try:
        return module.main([*common, "--name", "guarded", "--micro-batch", "4"])
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


if __name__ == "__main__":
    sys.exit(main())
