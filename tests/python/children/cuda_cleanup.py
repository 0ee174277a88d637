"""emergency_cleanup on a real GPU, in a process of its own.

usage: cuda_cleanup.py cache   # 4 GiB allocated and freed: the allocator keeps it cached until the cleanup
       cuda_cleanup.py sticky  # after a device-side assert (a sticky error): the cleanup answers, never raises
Prints one JSON line: the cleanup report, and NVML's figure for this process before and after.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from crashguard.guard.cleanup import emergency_cleanup
from crashguard.monitor.gpu import GPUMonitor

GIB = 2**30


def nvml_used(monitor: GPUMonitor) -> int | None:
    return monitor.process_vram().get(os.getpid())


def main() -> int:
    mode = sys.argv[1]
    monitor = GPUMonitor()
    block = torch.empty(4 * GIB, dtype=torch.uint8, device="cuda")
    block.fill_(1)
    torch.cuda.synchronize()
    del block  # freed, but torch's caching allocator keeps the 4 GiB reserved
    error = None
    if mode == "sticky":
        try:
            index = torch.tensor([10], device="cuda")
            torch.zeros(3, device="cuda")[index] += 1  # an out-of-bounds index: a device-side assert
            torch.cuda.synchronize()
        except Exception as exc:  # the context is now poisoned: every CUDA call fails from here on
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    before = nvml_used(monitor)
    report = emergency_cleanup()  # must return, whatever CUDA's state
    print(json.dumps({"error": error, "report": report.to_dict(), "nvml_before": before,
                      "nvml_after": nvml_used(monitor)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
