"""Under torchrun (2 ranks, gloo, CPU): a plain loop on guarded_run with the ranks' Coordinator. Rank 1 alone is
asked to checkpoint and stop (a control request in its own control folder) before its third step; every rank must
stop at that step's boundary, rank 0 writing the checkpoint and every rank naming it. Prints one JSON line a rank:
its outcome and whether it took SIGHUP (a closed terminal hangs up torchrun and its ranks alike)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

from crashguard.run import guarded_run
from crashguard.runs.status import control_dir
from crashguard.step.distributed import coordinator_for

STOP_ASKED_AT = 3

runs = Path(sys.argv[1])
coord, _ = coordinator_for("cpu")
torch.manual_seed(0)  # the same initial weights on every rank
model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
torch.manual_seed(1 + coord.rank)  # each rank its own share of the data
batch = {"x": torch.randn(4, 4), "y": torch.randn(4, 1)}
took_hangup = False
with guarded_run("ranks", model=model, optimizer=optimizer, runs_dir=runs, coord=coord, watchdog=False) as run:
    took_hangup = callable(signal.getsignal(signal.SIGHUP))
    for step in range(1, 20):
        if step == STOP_ASKED_AT and coord.rank == 1:
            ask = {"id": "ask", "action": "checkpoint_and_stop"}
            (control_dir(run.hook.run_dir, coord.rank) / "ask.json").write_text(json.dumps(ask))
        run.step(batch, lambda b: nn.functional.mse_loss(model(b["x"]), b["y"]))
        if run.should_stop:
            break
outcome = run.outcome
assert outcome is not None
# One write of the whole line: the ranks share torchrun's stdout pipe unbuffered, and print() writes the text and
# its newline separately, so two ranks' lines could run together (a write under PIPE_BUF is atomic).
result = {"rank": coord.rank, "state": outcome.state, "exit_code": outcome.exit_code, "message": outcome.message,
          "checkpoint": str(outcome.checkpoint), "took_hangup": took_hangup}
os.write(sys.stdout.fileno(), (json.dumps(result) + "\n").encode())
coord.close()
