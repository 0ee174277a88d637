"""`crashguard train` on CUDA, optionally under a VRAM budget that fits micro-batch 4 but not 8: a real CUDA OOM.

usage: cuda_budget_train.py CONFIG RUNS_DIR NAME [--budget]

With --budget, before the run, the bench's probe measures the peak reserved VRAM of real training steps (forward,
backward, optimizer, AMP as configured) at micro-batch 4 and 8, and this process's caching allocator is capped
halfway between them with torch.cuda.set_per_process_memory_fraction: the run's first micro-batch-8 step then
fails in the allocator exactly as it would on a smaller GPU. Without it, the unconstrained reference run.
Prints one JSON line: the budget and the measured peaks (bytes), and the run's exit code.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch

from crashguard.batch_search.probe import TrainStepProbe
from crashguard.training.config import load_config
from crashguard.training.run import RunPlace, execute, prepare


def main() -> int:
    config = load_config(Path(sys.argv[1]))
    facts: dict[str, object] = {"budget": None}
    if "--budget" in sys.argv:
        device = torch.device("cuda", 0)
        probe = TrainStepProbe(config, device)
        probe.warm_up()
        peaks = {micro: probe(micro) for micro in (4, 8)}
        del probe
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)  # the run's own peak, not the calibration's
        four, eight = peaks[4].peak, peaks[8].peak
        if peaks[4].oom or peaks[8].oom or four is None or eight is None or eight < 1.25 * four:
            print(f"calibration failed: {peaks}", file=sys.stderr)
            return 10
        budget = (four + eight) // 2
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(budget / total, device)
        facts.update(budget=budget, peak4=four, peak8=eight, total=total)
    trainer, resumed = prepare(config, RunPlace(Path(sys.argv[2]), sys.argv[3]), resume="never", progress=False)
    outcome = execute(trainer, resumed)
    facts.update(exit_code=outcome.exit_code, state=outcome.state, amp=trainer.amp, device=str(trainer.device),
                 scale=float(trainer.scaler.get_scale()) if trainer.amp else None,
                 max_reserved=torch.cuda.max_memory_reserved(trainer.device))
    print(json.dumps(facts))
    return 0 if outcome.exit_code == 0 else outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
