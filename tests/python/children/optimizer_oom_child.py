"""A real CPU out-of-memory in the first optimizer update: AdamW's multi-tensor update (foreach, torch's default on
CUDA) allocates its state and then a temporary the size of all parameters; under an RLIMIT_AS in which the
one-parameter-at-a-time update fits and the multi-tensor one does not, the guarded step undoes the half-applied
update and retries it leaner.

usage: optimizer_oom_child.py RUNS_DIR

The model is a small 3D net whose parameters (~57 MB) dominate its activations, so the two updates' needs differ by
~50 MB. The limit is calibrated here: the smallest headroom over the current address-space size in which one whole
first step (forward, backward, the snapshot the guarded step takes, the update) fits with each update path; the
limit is halfway between. Then a guarded run (AdamW foreach=True) trains 3 steps under it, after an unconstrained
reference run with foreach=False. The test sets MALLOC_MMAP_THRESHOLD_ (big tensors unmapped when freed) and
MALLOC_ARENA_MAX=1 (a new thread's first malloc reserves no 64 MiB arena), as the other RLIMIT tests do.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

import torch
from torch import nn

from crashguard.guard.cleanup import emergency_cleanup
from crashguard.guard.failures import is_oom
from crashguard.run import guarded_run

MIB = 2**20
STEPS = 3


def build() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv3d(1, 256, 4, stride=4)]
    for _ in range(8):
        layers += [nn.Conv3d(256, 256, 3, padding=1), nn.ReLU()]
    layers.append(nn.ConvTranspose3d(256, 1, 4, stride=4))
    return nn.Sequential(*layers)


def batch(step: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    image = torch.randn(2, 1, 8, 8, 8, generator=g)
    return {"image": image, "label": (image > 0.5).float()}


def loss_of(model: nn.Module):
    return lambda b: nn.functional.binary_cross_entropy_with_logits(model(b["image"]), b["label"])


def vm_size() -> int:
    return int(re.search(r"VmSize:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def first_step_fits(foreach: bool, headroom: int) -> bool:
    model = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=foreach)
    emergency_cleanup()
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom, resource.RLIM_INFINITY))
    try:
        loss_of(model)(batch(0)).backward()
        snapshot = [p.detach().clone() for p in model.parameters()]  # what the guarded step keeps to undo
        optimizer.step()
        del snapshot
        return True
    except Exception as exc:
        if not is_oom(exc):
            raise
        return False
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def need(foreach: bool, low: int = 0) -> int:
    high = 1024 * MIB
    assert first_step_fits(foreach, high)
    while high - low > 4 * MIB:
        mid = (low + high) // 2
        low, high = (low, mid) if first_step_fits(foreach, mid) else (mid, high)
    return high


def train(runs_dir: str, name: str, foreach: bool, headroom: int | None = None) -> None:
    model = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=foreach)
    torch.manual_seed(1)
    if headroom is not None:  # with the model built, as in the calibration
        emergency_cleanup()
        resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom, resource.RLIM_INFINITY))
    with guarded_run(name, model=model, optimizer=optimizer, runs_dir=runs_dir, watchdog=False) as run:
        for step in range(STEPS):
            run.step(batch(step), loss_of(model))


def main() -> int:
    runs_dir = sys.argv[1]
    train(runs_dir, "reference", foreach=False)  # also the warm-up: lazy allocations happen now
    single = need(False)
    multi = need(True, low=single)
    print(f"first step needs {single / MIB:.0f} MiB (one parameter at a time), {multi / MIB:.0f} MiB (foreach)",
          file=sys.stderr)
    if multi - single < 24 * MIB:
        print("calibration failed: the two updates need about the same", file=sys.stderr)
        return 10
    try:
        train(runs_dir, "guarded", foreach=True, headroom=(single + multi) // 2)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    return 0


if __name__ == "__main__":
    sys.exit(main())
