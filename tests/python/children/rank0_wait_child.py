"""Under torchrun: rank 0 works longer than a collective may wait (CRASHGUARD_DIST_TIMEOUT), through on_rank0
(the data download and check); every rank writes what it got to <out>/rank<N>.json (one file each: two ranks
printing to one pipe at once can share a line)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from crashguard.step.distributed import coordinator_for
from crashguard.training.run import on_rank0


def slow_download() -> str:
    time.sleep(float(sys.argv[1]))
    return "downloaded"


coord, _ = coordinator_for("cpu")
got = on_rank0(coord, slow_download)
(Path(sys.argv[2]) / f"rank{coord.rank}.json").write_text(json.dumps({"rank": coord.rank, "got": got}))
coord.close()
