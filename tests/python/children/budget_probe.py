"""find-batch's probe (real training steps) at given micro-batches, with this process's CUDA allocator capped at
BUDGET bytes (torch.cuda.set_per_process_memory_fraction): does the size `crashguard find-batch` chose really fit?

usage: budget_probe.py CONFIG BUDGET MICRO [MICRO ...]
Prints one JSON line: {"<micro>": {"oom": bool, "peak": bytes}, ...}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from crashguard.batch_search.probe import TrainStepProbe
from crashguard.training.config import load_config


def main() -> int:
    config = load_config(Path(sys.argv[1]))
    budget = int(sys.argv[2])
    device = torch.device("cuda", 0)
    probe = TrainStepProbe(config, device)
    probe.warm_up()
    torch.cuda.set_per_process_memory_fraction(budget / torch.cuda.get_device_properties(device).total_memory, device)
    found = {}
    for micro in map(int, sys.argv[3:]):
        result = probe(micro)
        found[str(micro)] = {"oom": result.oom, "peak": result.peak}
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
