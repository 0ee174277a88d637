"""`crashguard train` for torchrun, with an out-of-memory on one rank only, *inside backward*.

usage: torchrun ... ddp_oom_child.py train --config ... (the same arguments as `python -m crashguard`)

The OOM comes from a gradient hook on the first layer's output, so it happens late in backward, where DDP's own
gradient all-reduce would already be under way. Only the rank named by CRASHGUARD_TEST_OOM_RANK fails, and only
for training micro-batches of more than CRASHGUARD_TEST_OOM_ABOVE samples: the other rank has no reason to fail
and must not be left waiting.

CRASHGUARD_TEST_OOM_KIND:
- "raised": torch.cuda.OutOfMemoryError is raised (a CUDA OOM cannot happen here: no GPU);
- "rlimit": a real CPU allocation failure. At its first training forward the rank caps its own address space
  (RLIMIT_AS) at its current size + 512 MiB; the hook then asks torch for 1 GiB, which the allocator cannot get.
  Everything else the rank does (micro-batch 1, cleanup, gloo, status files) fits in the headroom.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from pathlib import Path

import torch
from monai.networks.nets import SegResNet

from crashguard.cli import main

FAIL_RANK = int(os.environ["CRASHGUARD_TEST_OOM_RANK"])
ABOVE = int(os.environ["CRASHGUARD_TEST_OOM_ABOVE"])
KIND = os.environ.get("CRASHGUARD_TEST_OOM_KIND", "raised")
MIB = 2**20
_capped = False


def vm_size() -> int:
    return int(re.search(r"VmSize:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def oom_in_backward(_grad: torch.Tensor) -> None:
    if KIND == "rlimit":
        torch.empty(1024 * MIB, dtype=torch.uint8)  # over the RLIMIT_AS headroom: the allocator fails for real
        raise AssertionError("1 GiB fitted under RLIMIT_AS: the test's premise is gone")
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected in backward)")


def arm(module: torch.nn.Module, args: tuple) -> None:
    """Before a training forward of the network: cap the address space once ("rlimit"), and for a micro-batch
    over the limit make the gradient of the *first* layer's output fail. Backward reaches it last, after every
    deeper layer's gradient is done: where plain DDP would already have all-reduced most gradient buckets."""
    global _capped
    if not (isinstance(module, SegResNet) and module.training and torch.is_grad_enabled()):
        return
    if KIND == "rlimit" and not _capped:
        _capped = True
        resource.setrlimit(resource.RLIMIT_AS, (vm_size() + 512 * MIB, resource.RLIM_INFINITY))
    if args[0].shape[0] > ABOVE:
        def fail_in_backward(_m: torch.nn.Module, _a: tuple, output: torch.Tensor) -> None:
            handle.remove()
            output.register_hook(oom_in_backward)

        handle = module.convInit.register_forward_hook(fail_in_backward)


if __name__ == "__main__":
    if int(os.environ["RANK"]) == FAIL_RANK:
        torch.nn.modules.module.register_module_forward_pre_hook(arm)
    sys.exit(main(sys.argv[1:]))
