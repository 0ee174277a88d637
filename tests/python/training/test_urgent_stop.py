"""An urgent checkpoint-and-stop (contract 1: `"urgent": true`, what the sidecar's ladder sends at critical memory)
does not wait for a long step: the checkpoint of the last completed step is written within a bound that does not
depend on the step length, and the resumed run continues from it with no step lost or repeated."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from training_helpers import child_env, crashguard, events, records

from crashguard.runs.files import read_json
from crashguard.training.sample_data import write_sample_dataset
from crashguard.util.json_io import write_json_atomic

BOUND_S = 10.0  # generous for a loaded 2-core machine; typically well under 1 s (poll 0.2 s + the write)


def send_urgent_stop(run_dir: Path) -> tuple[str, float]:
    """A checkpoint_and_stop request with urgent: true, as runs.control writes it (contract 1)."""
    request_id = f"{time.time_ns()}-urgent"
    sent = time.time()
    write_json_atomic(run_dir / "control" / f"{request_id}.json",
                      {"id": request_id, "action": "checkpoint_and_stop", "sent": sent, "urgent": True})
    return request_id, sent


@pytest.mark.slow
def test_urgent_stop_writes_the_last_completed_step_without_waiting_for_the_step(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    root = tmp_path / "data"
    write_sample_dataset(root / "Task01_BrainTumour", cases=6, size=64, seed=3)
    # A step of several seconds on a CPU: 64³ crops, two forward/backward passes of one sample each; 4 training
    # cases make 2 steps.
    config = write_config(data={"root": str(root), "val_fraction": 0.34},
                          train={"roi_size": [64, 64, 64], "epochs": 1, "effective_batch": 2, "micro_batch": 1,
                                 "sw_batch_size": 1, "val_every_epochs": 100},
                          checkpoint={"every_steps": 100, "keep": 3})
    run_dir = tmp_path / "runs" / "long"
    trainer = subprocess.Popen([sys.executable, "-m", "crashguard", "train", "--config", str(config),
                                "--runs-dir", "runs", "--run-name", "long", "--no-progress"],
                               cwd=tmp_path, env=child_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while True:  # the first step has completed: the request now arrives early in the second one
        status = read_json(run_dir / "status.json")
        if isinstance(status, dict) and status.get("state") == "running" and status.get("step", 0) >= 1:
            break
        assert trainer.poll() is None, trainer.stderr.read() if trainer.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    request_id, sent = send_urgent_stop(run_dir)
    assert trainer.wait(timeout=120) == 0, trainer.stderr.read() if trainer.stderr else ""
    answer = json.loads((run_dir / "control" / f"{request_id}.done.json").read_text())
    status = json.loads((run_dir / "status.json").read_text())
    assert answer["ok"] and answer["report"]["state"] == "stopped", answer
    checkpoint = Path(answer["report"]["checkpoint"])
    assert status["state"] == "stopped" and "urgent" in status["exit_cause"]
    assert checkpoint.name == "step-00000001.pt" and status["checkpoint"] == str(checkpoint)
    written_after = checkpoint.stat().st_mtime - sent
    step_seconds = records(run_dir, "step")[0]["seconds"]
    print(f"urgent stop: checkpoint written {written_after:.2f} s after the request; a step takes "
          f"{step_seconds:.1f} s")
    assert [r["step"] for r in records(run_dir, "step")] == [1]  # the step in flight was abandoned, not recorded
    assert written_after < BOUND_S
    assert written_after < step_seconds / 2  # a stop that waited for the step's end would take ~a whole step

    command = status["resume_command"]  # what the crash prompt's Resume runs
    assert command["argv"][:5] == [sys.executable, "-I", "-m", "crashguard", "train"]  # isolated from its folder
    assert command["argv"][-2:] == ["--resume", "auto"] and command["cwd"] == str(tmp_path)
    resumed = subprocess.run([*command["argv"], "--no-progress"], cwd=command["cwd"], env=child_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resume = events(run_dir, "resume")
    assert len(resume) == 1 and resume[0]["step"] == 1
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == [1, 2]  # none lost, none repeated

    reference = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", "reference",
                           "--no-supervise", "--no-progress", cwd=tmp_path, timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = [s["loss"] for s in records(tmp_path / "runs" / "reference", "step")]
    assert [s["loss"] for s in steps] == pytest.approx(expected, rel=1e-5)  # data position and RNG included
