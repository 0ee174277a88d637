"""An urgent stop in an interactive session (a notebook kernel, `python -i`): the checkpoint of the last completed
step is written at once, and the session survives (UrgentStop ends the `with` block, not the interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from integration_helpers import child_env

from crashguard.runs.files import read_json
from crashguard.util.json_io import write_json_atomic

SESSION = """
import sys, time, torch
sys.ps1 = ">>> "  # what an interactive interpreter (and IPython's kernel) sets: Crash Guard must not exit it
import crashguard

class Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4))
    def forward(self, x):
        for _ in range(400):  # a long step: many short operations
            time.sleep(0.01)
            x = x * 1.0
        return (x * self.w).sum(1)

model = Slow()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with crashguard.guarded_run("nb", model=model, optimizer=opt, runs_dir=sys.argv[1]) as run:
    for step in range(10):
        run.step(torch.ones(2, 4), lambda b: model(b).mean())
print("session alive after step", run.completed_steps, flush=True)
"""


@pytest.mark.slow
def test_an_urgent_stop_in_an_interactive_session_keeps_the_session(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    session = subprocess.Popen([sys.executable, "-c", SESSION, str(runs)], cwd=tmp_path, env=child_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        status = read_json(runs / "nb" / "status.json")
        if isinstance(status, dict) and status.get("step", 0) >= 1:
            break
        assert session.poll() is None and time.monotonic() < deadline, session.communicate()[1][-2000:]
        time.sleep(0.05)
    sent = time.time()
    write_json_atomic(runs / "nb" / "control" / "u1.json",
                      {"id": "u1", "action": "checkpoint_and_stop", "sent": sent, "urgent": True})
    out, err = session.communicate(timeout=60)
    assert session.returncode == 0, err[-2000:]
    assert "session alive after step 1" in out  # the interpreter went on after the with block
    answer = json.loads((runs / "nb" / "control" / "u1.done.json").read_text())
    status = json.loads((runs / "nb" / "status.json").read_text())
    assert answer["ok"] and status["state"] == "stopped" and status["step"] == 1
    assert Path(status["checkpoint"]).name == "step-00000001.pt"
    assert Path(status["checkpoint"]).stat().st_mtime - sent < 3.0  # not after the 4 s step in flight
    assert status["resume_command"] is None  # `python -c`: nothing to rerun
