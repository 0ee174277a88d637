"""Under torchrun: rank 0 works longer than a collective may wait (CRASHGUARD_DIST_TIMEOUT), through on_rank0
(the data download and check); every rank prints what it got."""

from __future__ import annotations

import json
import sys
import time

from crashguard.step.distributed import coordinator_for
from crashguard.training.run import on_rank0


def slow_download() -> str:
    time.sleep(float(sys.argv[1]))
    return "downloaded"


coord, _ = coordinator_for("cpu")
print(json.dumps({"rank": coord.rank, "got": on_rank0(coord, slow_download)}), flush=True)
coord.close()
