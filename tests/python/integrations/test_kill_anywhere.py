"""A kill -9 at a random step, with no stop asked, costs at most the checkpoint interval, in every front door: the
run is resumed through the command it recorded, and every step after the resume has the loss (1e-6, CPU) and the
sample ids of an uninterrupted run. One uninterrupted reference run per front door per session; the kill steps are
drawn from a fixed seed, so a failure reproduces (crashguard train's own: tests/python/training/test_kill_resume.py).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import EXAMPLES, STEPS_PER_EPOCH, child_env, events, steps
from locations import CHILDREN

EPOCHS = 3
TOTAL = EPOCHS * STEPS_PER_EPOCH  # 12 steps, 3 epochs: kills land mid-epoch, at an epoch's end, in a later epoch
INTERVAL = 3  # checkpoint every 3 steps (and every 10 minutes: never, in a run this short)
KILL_STEPS = sorted(random.Random(20).sample(range(2, TOTAL), 3))
FRONT_DOORS: dict[str, list[str]] = {
    "plain": ["plain_loop.py", "--steps", str(TOTAL)],
    "monai": ["monai_trainer.py", "--epochs", str(EPOCHS)],
    "lightning-manual": ["lightning_module.py", "--epochs", str(EPOCHS)],
    "lightning-automatic": ["lightning_module.py", "--epochs", str(EPOCHS), "--automatic"],
}


def command(front_door: str, runs: Path, interval: int = INTERVAL) -> list[str]:
    script, *length = FRONT_DOORS[front_door]
    return [sys.executable, str(CHILDREN / "kill_at_step.py"), str(EXAMPLES / script), "--runs-dir", str(runs),
            "--name", "run", "--size", "16", "--checkpoint-every", str(interval), *length]


def by_step(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["step"]: r for r in records}


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The uninterrupted run of a front door, made once per session: its steps by number."""
    made: dict[str, dict[int, dict[str, Any]]] = {}

    def of(front_door: str) -> dict[int, dict[str, Any]]:
        if front_door not in made:
            runs = tmp_path_factory.mktemp(f"reference-{front_door}") / "runs"
            subprocess.run(command(front_door, runs), env=child_env(), check=True, timeout=300,
                           stderr=subprocess.DEVNULL, cwd=runs.parent)
            made[front_door] = by_step(steps(runs / "run"))
            assert sorted(made[front_door]) == list(range(1, TOTAL + 1))
        return made[front_door]

    return of


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", KILL_STEPS)
@pytest.mark.parametrize("front_door", list(FRONT_DOORS))
def test_a_kill_9_anywhere_redoes_at_most_the_interval_and_the_resumed_steps_match(
        tmp_path: Path, front_door: str, kill_at: int, reference: Any) -> None:
    kill_and_resume(tmp_path, front_door, kill_at, INTERVAL, reference)


@pytest.mark.slow
@pytest.mark.parametrize("front_door", list(FRONT_DOORS))
def test_a_checkpoint_of_an_epochs_last_batch_resumes_with_the_next_epoch_whole(
        tmp_path: Path, front_door: str, reference: Any) -> None:
    # A checkpoint every epoch's worth of steps lands on each epoch's last batch; killed in the next epoch, the run
    # resumes there (Lightning handed the next epoch the finished loader's position and skipped the epoch).
    kill_and_resume(tmp_path, front_door, STEPS_PER_EPOCH + 2, STEPS_PER_EPOCH, reference)


def kill_and_resume(tmp_path: Path, front_door: str, kill_at: int, interval: int, reference: Any) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "run"
    killed = subprocess.run(command(front_door, runs, interval), env=child_env(CRASHGUARD_TEST_KILL_AT=str(kill_at)),
                            cwd=tmp_path, timeout=300, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = len(steps(run_dir))
    left = json.loads((run_dir / "status.json").read_text())  # written at most once a second: its step may lag
    recorded = left["resume_command"]
    assert recorded is not None and "--resume" in recorded["argv"]

    resumed = subprocess.run(recorded["argv"], cwd=recorded["cwd"], env=child_env(), timeout=300,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumes = [e for e in events(run_dir) if e["event"] == "resume"]
    start = resumes[0]["step"] if resumes else 0  # killed while its first checkpoint was written: from the start
    assert kill_at - interval <= start <= kill_at, (start, kill_at)  # the work redone: at most the interval
    said = f"resumed from step {start}" if resumes else "no checkpoint to resume from"
    if left["step"] > start:  # what the status last said the killed run had done, past the checkpoint
        said += f", {left['step'] - start} step"
    assert said in resumed.stderr, resumed.stderr[-2000:]  # said without any logging set up
    after = steps(run_dir)[before:]
    assert [s["step"] for s in after] == list(range(start + 1, TOTAL + 1))
    expected = reference(front_door)
    for record in after:
        want = expected[record["step"]]
        assert record["ids"] == want["ids"], (record["step"], record["ids"], want["ids"])
        assert record["loss"] == pytest.approx(want["loss"], abs=1e-6), record["step"]
    final = json.loads((run_dir / "status.json").read_text())
    assert final["state"] == "finished" and final["step"] == TOTAL
