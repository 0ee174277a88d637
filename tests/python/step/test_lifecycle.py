"""The one run lifecycle (GuardedRun) on its own, in this process: every ending state with its exit code, cause,
checkpoint and event in the run's one event log; the periodic checkpoint; the between-steps memory reaction; the
signals it takes and gives back. `crashguard train` ends through exactly this code (its exit codes are
`Outcome.exit_code`); the trainer's own runs are in tests/python/training, the integrations' in
tests/python/integrations, the torchrun agreement in tests/python/integrations/test_guarded_run_ranks.py and
tests/python/training/test_distributed.py, the event log's attacks in tests/python/runs/test_event_log.py."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from crashguard.guard.failures import Failure, FailureKind
from crashguard.runs.event_log import EVENTS_FILE, read_events
from crashguard.step.backoff import OutOfMemoryAtMinimum
from crashguard.step.distributed import PeerLost
from crashguard.step.lifecycle import GuardedRun, Outcome, RamThresholds

STEPS = 2
CPU_OOM = Failure(FailureKind.CPU_OOM, "RuntimeError", "DefaultCPUAllocator: can't allocate memory")


def make_run(tmp_path: Path, **options: object) -> tuple[GuardedRun, Callable[[], float]]:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    settings: dict[str, object] = {"watchdog": False, "handle_signals": False, **options}
    run = GuardedRun("life", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     runs_dir=tmp_path / "runs", **settings)  # type: ignore[arg-type]
    batch = {"x": torch.randn(4, 4), "y": torch.randn(4, 1)}

    def one_step() -> float:
        return run.step(batch, lambda b: nn.functional.mse_loss(model(b["x"]), b["y"]))

    return run, one_step


def status(run: GuardedRun) -> dict:
    return json.loads((run.hook.run_dir / "status.json").read_text())


def history(run: GuardedRun) -> list[dict]:
    return list(read_events(run.hook.run_dir / EVENTS_FILE))


def _asked(run: GuardedRun) -> None:
    run.request_stop()


def _high_mark(run: GuardedRun) -> None:
    run.request_stop("memory high mark: working set 491 MiB over the high mark 300 MiB", exit_code=3)


def _oom(run: GuardedRun) -> None:
    raise OutOfMemoryAtMinimum("training step", CPU_OOM)


def _torn(run: GuardedRun) -> None:
    raise OutOfMemoryAtMinimum("the optimizer's update", CPU_OOM, weights_intact=False, limit="(the weights are torn)")


def _peer(run: GuardedRun) -> None:
    raise PeerLost("the gradient all-reduce failed: Connection closed by peer")


def _error(run: GuardedRun) -> None:
    raise ValueError("boom")


def _interrupt(run: GuardedRun) -> None:
    raise KeyboardInterrupt


# (how the loop ends, state, exit code, the ending event, the checkpoint's step, whether the block re-raises)
ENDINGS = {
    "finished": (None, "finished", 0, "finished", STEPS, False),
    "asked": (_asked, "stopped", 0, "stopped", STEPS, False),
    "high mark": (_high_mark, "stopped", 3, "stopped", STEPS, False),
    "oom at the minimum": (_oom, "failed", 3, "oom_stop", STEPS, True),
    "torn update": (_torn, "failed", 3, "oom_stop", 1, True),
    "peer lost": (_peer, "failed", 4, "peer_lost", STEPS, True),
    "error": (_error, "failed", 1, "failed", 1, True),
    "interrupt": (_interrupt, "failed", 1, "failed", 1, True),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_ending_has_one_state_an_exit_code_a_checkpoint_and_an_event(tmp_path: Path, ending: str) -> None:
    end, state, exit_code, event, saved_step, raises = ENDINGS[ending]
    run, one_step = make_run(tmp_path)
    caught: BaseException | None = None
    try:
        with run:
            one_step()
            run.checkpoint_now()  # step 1: the last good checkpoint a torn update falls back to
            one_step()
            if end is not None:
                end(run)
                one_step()  # after a stop request this is the boundary to stop at: RunStopped ends the block
    except BaseException as exc:
        caught = exc
    assert (caught is not None) == raises, caught
    outcome = run.outcome
    assert isinstance(outcome, Outcome) and (outcome.state, outcome.exit_code) == (state, exit_code)
    assert outcome.checkpoint is not None and outcome.checkpoint.name == f"step-{saved_step:08d}.pt"
    final = status(run)
    assert final["state"] == state and final["step"] == STEPS and final["checkpoint"] == str(outcome.checkpoint)
    last = history(run)[-1]
    assert (last["event"], last["step"], last["message"]) == (event, STEPS, outcome.message)
    checkpoints = sorted(p.name for p in (run.hook.run_dir / "checkpoints").glob("step-*.pt"))
    if ending == "torn update":
        assert checkpoints == ["step-00000001.pt"]  # torn weights are never checkpointed
    elif ending in ("error", "interrupt"):
        assert checkpoints == ["step-00000001.pt"]  # an unexpected failure keeps the last checkpoint
    else:
        assert checkpoints[-1] == f"step-{STEPS:08d}.pt"
    cause = final["exit_cause"]
    expected_cause = {
        "finished": None, "asked": "checkpoint-and-stop",
        "high mark": f"stopped at step {STEPS}: memory high mark: working set 491 MiB over the high mark 300 MiB",
        "error": "ValueError: boom", "interrupt": "interrupted",
    }
    if ending in expected_cause:
        assert cause == expected_cause[ending]
    else:
        assert cause == outcome.message
    if ending == "oom at the minimum":
        assert cause.startswith("out of memory in training step at the smallest batch: cpu_oom") \
            and cause.endswith(f"stopped with a checkpoint at step {STEPS} ({outcome.checkpoint})")
    if ending == "torn update":
        assert cause.endswith(f"stopped, the last good checkpoint is {outcome.checkpoint}")
    if ending == "peer lost":
        assert cause.startswith("rank 0 of 1: another rank is gone (the gradient all-reduce failed")


def test_a_real_oom_at_micro_batch_one_ends_failed_with_exit_3_and_the_steps_checkpoint(tmp_path: Path) -> None:
    run, one_step = make_run(tmp_path, micro_batch=2)
    with pytest.raises(OutOfMemoryAtMinimum), run:
        one_step()

        def no_memory(_module: nn.Module, _args: tuple) -> None:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (raised by the test)")

        run.model.register_forward_pre_hook(no_memory)  # type: ignore[union-attr]
        one_step()
    assert run.outcome is not None and (run.outcome.state, run.outcome.exit_code) == ("failed", 3)
    kinds = [e["event"] for e in history(run)]
    assert kinds == ["oom_backoff", "checkpoint", "oom_stop"]  # 2 -> 1, then nothing smaller: the step-1 state
    assert run.outcome.checkpoint is not None and run.outcome.checkpoint.name == "step-00000001.pt"


def test_a_stop_request_in_the_control_folder_stops_at_the_next_boundary(tmp_path: Path) -> None:
    run, one_step = make_run(tmp_path)
    with run:
        one_step()
        control = run.hook.run_dir / "control"
        (control / "ask.json").write_text(json.dumps({"id": "ask", "action": "checkpoint_and_stop"}))
        one_step()
        assert run.should_stop
        one_step()  # the loop went on: RunStopped at this boundary
    assert run.outcome is not None and run.outcome.message == "stopped on request at step 2"
    answer = json.loads((run.hook.run_dir / "control" / "ask.done.json").read_text())
    assert answer["ok"] and answer["report"]["checkpoint"] == str(run.outcome.checkpoint)
    assert [e["event"] for e in history(run)] == ["stop_requested", "checkpoint", "stopped"]


def test_periodic_checkpoints_every_n_steps_and_none_written_twice(tmp_path: Path) -> None:
    run, one_step = make_run(tmp_path, checkpoint_every_steps=2, keep=10, background_checkpoints=False)
    with run:
        for _ in range(4):
            one_step()
    names = sorted(p.name for p in (run.hook.run_dir / "checkpoints").glob("step-*.pt"))
    assert names == ["step-00000002.pt", "step-00000004.pt"]  # the end found step 4 saved already
    assert [(e["event"], e["step"]) for e in history(run)] == [("checkpoint", 2), ("checkpoint", 4), ("finished", 4)]


def test_ram_thresholds_halve_the_micro_batch_before_an_oom(tmp_path: Path) -> None:
    # Thresholds below any real reading: every boundary finds RAM "over" even after the cleanup.
    run, one_step = make_run(tmp_path, micro_batch=4, ram_thresholds=RamThresholds(0.001, 0.001))
    with run:
        for _ in range(3):
            one_step()
    backoffs = [e["message"] for e in history(run) if e["event"] == "ram_backoff"]
    assert [m.split(": ")[-1] for m in backoffs] == ["micro-batch 4->2", "micro-batch 2->1"]
    assert backoffs[0].startswith("RAM at ") and "(backoff_ram_fraction 0%) after cleanup" in backoffs[0]
    assert status(run)["micro_batch"] == 1 and run.memory.ram_percent is not None


def test_ram_over_the_log_fraction_only_is_an_event_at_most_once_a_minute(tmp_path: Path) -> None:
    run, one_step = make_run(tmp_path, micro_batch=4, ram_thresholds=RamThresholds(0.001, 1.0))
    with run:
        for _ in range(3):
            one_step()
    notes = [e for e in history(run) if e["event"].startswith("ram_")]
    assert [e["event"] for e in notes] == ["ram_warning"] and "(log_ram_fraction 0%)" in notes[0]["message"]
    assert status(run)["micro_batch"] == 4  # no back-off below the back-off fraction


def test_the_signals_are_taken_at_start_and_given_back_at_the_end(tmp_path: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    run, one_step = make_run(tmp_path, handle_signals=True)
    with run:
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) is before[signal.SIGHUP]  # one process: a hang-up is not ours
        one_step()
        os.kill(os.getpid(), signal.SIGTERM)  # checkpoint and stop at the next boundary
        one_step()
    assert {s: signal.getsignal(s) for s in before} == before
    assert run.outcome is not None and run.outcome.state == "stopped" and run.outcome.message.endswith("step 2")


def test_a_checkpoint_falls_due_by_wall_time_and_the_status_names_its_step_and_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crashguard.step.run_checkpoints as rc

    clock = [1000.0]
    monkeypatch.setattr(rc.time, "monotonic", lambda: clock[0])
    run, one_step = make_run(tmp_path, checkpoint_every_minutes=2)  # no step interval: time alone
    with run:
        one_step()
        clock[0] += 119  # under two minutes since the start: nothing yet
        one_step()
        assert run.checkpoints.flush(30) and run.last_checkpoint is None
        clock[0] += 2  # over two minutes: a checkpoint at this boundary, written in the background
        one_step()
        assert run.checkpoints.flush(30)
        assert run.last_checkpoint is not None and run.last_checkpoint.name == "step-00000003.pt"
        written = status(run)
        assert written["checkpoint"] == str(run.last_checkpoint) and written["checkpoint_step"] == 3
        assert 0 < written["checkpoint_time"] <= written["updated"] and written["snapshot_bytes"] == 0
        one_step()  # the interval runs from the last checkpoint: none at step 4
        assert run.checkpoints.flush(30) and run.last_checkpoint.name == "step-00000003.pt"
    assert status(run)["checkpoint_step"] == 4  # the end's own checkpoint
    kinds = [(e["event"], e["step"], e.get("background")) for e in history(run) if e["event"] == "checkpoint"]
    assert kinds == [("checkpoint", 3, True), ("checkpoint", 4, None)]


def test_a_periodic_checkpoint_due_while_one_is_written_is_delayed_to_the_next_boundary(tmp_path: Path) -> None:
    import threading

    release = threading.Event()
    run, one_step = make_run(tmp_path, checkpoint_every_steps=1, checkpoint_every_minutes=None)
    writer = run.checkpoints._writer
    real_submit = writer.submit

    def slow_submit(write, step, taken, nbytes):  # the disk is slow: the first write waits for the test
        def held() -> Path:
            release.wait(30)
            return write()
        real_submit(held if step == 1 else write, step, taken, nbytes)

    writer.submit = slow_submit  # type: ignore[method-assign]
    with run:
        one_step()  # step 1: snapshotted, its write held
        assert run.checkpoints._writer.busy and run.hook.status.snapshot_bytes > 0  # written within a second
        one_step()  # step 2 is due, but the write of step 1 is in flight: delayed, training goes on
        one_step()
        release.set()
        assert run.checkpoints.flush(30)
        one_step()  # step 4: the delayed checkpoint is taken at the first boundary after the write ended
        assert run.checkpoints.flush(30)
    events = [(e["event"], e["step"]) for e in history(run) if e["event"].startswith("checkpoint")]
    assert events == [("checkpoint_delayed", 2), ("checkpoint", 1), ("checkpoint", 4)]
    assert sorted(p.name for p in (run.hook.run_dir / "checkpoints").glob("step-*.pt"))[-1] == "step-00000004.pt"


def test_a_background_checkpoint_is_the_boundarys_state_not_a_later_one(tmp_path: Path) -> None:
    from crashguard.step.checkpoint import load_checkpoint

    run, one_step = make_run(tmp_path, checkpoint_every_steps=2, checkpoint_every_minutes=None, keep=10)
    with run:
        one_step()
        one_step()  # step 2: snapshotted now, written while steps 3 and 4 change the live weights
        at_two = {k: v.clone() for k, v in run.model.state_dict().items()}
        one_step()
        one_step()
    saved = load_checkpoint(run.hook.run_dir / "checkpoints" / "step-00000002.pt")
    assert saved["step"] == 2 and all(torch.equal(saved["model"][k], v) for k, v in at_two.items())
    assert not all(torch.equal(run.model.state_dict()[k], v) for k, v in at_two.items())


def test_while_ram_is_critical_the_periodic_snapshot_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, one_step = make_run(tmp_path, checkpoint_every_steps=1, checkpoint_every_minutes=None)
    with run:
        one_step()  # the first snapshot measures what a snapshot costs
        assert run.checkpoints.flush(30) and run.checkpoints._snapshot_bytes
        run.checkpoints.ram_limit = 0.0001  # every reading is "critical" now
        one_step()
        one_step()
        assert run.checkpoints.flush(30) and run.last_checkpoint.name == "step-00000001.pt"
        run.checkpoints.ram_limit = 1.0
        one_step()
        assert run.checkpoints.flush(30) and run.last_checkpoint.name == "step-00000004.pt"
    delayed = [e for e in history(run) if e["event"] == "checkpoint_delayed"]
    assert len(delayed) == 1 and delayed[0]["step"] == 2 and "RAM at" in delayed[0]["message"]


def test_nothing_to_checkpoint_is_a_warning_at_start(tmp_path: Path) -> None:
    from crashguard.step.notices import CrashGuardWarning

    model = nn.Linear(4, 1)
    run = GuardedRun("bare", optimizer=torch.optim.SGD(model.parameters(), lr=0.1), runs_dir=tmp_path / "runs",
                     watchdog=False, handle_signals=False)
    with pytest.warns(CrashGuardWarning, match="nothing to checkpoint"), run:
        pass


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_a_bad_step_interval_is_refused_naming_the_keyword(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="checkpoint_every_steps"):
        make_run(tmp_path, checkpoint_every_steps=bad)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), 10081, "10"])
def test_a_bad_time_interval_is_refused_naming_the_keyword(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="checkpoint_every_minutes"):
        make_run(tmp_path, checkpoint_every_minutes=bad)


def test_a_resume_says_what_it_redoes_from_the_status_the_killed_process_left(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run, one_step = make_run(tmp_path, checkpoint_every_steps=2, checkpoint_every_minutes=None, keep=10)
    with run:
        for _ in range(2):
            one_step()
    left = status(run)
    # What a process killed 3 steps (3 minutes) after its checkpoint of step 2 leaves behind.
    left.update(state="running", step=5, updated=left["checkpoint_time"] + 180)
    (run.hook.run_dir / "status.json").write_text(json.dumps(left))
    again, _ = make_run(tmp_path)
    with again:
        assert again.resume() == 2
    assert "crashguard: resumed from step 2, 3 steps (about 3 min) of work redone" in capfd.readouterr().err
    [resume] = [e for e in history(again) if e["event"] == "resume"]
    assert "3 steps (about 3 min) of work redone" in resume["message"]


def test_a_forged_previous_status_only_loses_the_note(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run, one_step = make_run(tmp_path, checkpoint_every_steps=1, checkpoint_every_minutes=None)
    with run:
        one_step()
    (run.hook.run_dir / "status.json").write_text(json.dumps({"name": "life", "pid": 1, "create_time": 1.0,
                                                              "step": 9, "checkpoint_step": 2**60}))
    again, _ = make_run(tmp_path)
    with again:
        assert again.resume() == 1
    assert "crashguard: resumed from step 1\n" in capfd.readouterr().err  # refused: nothing redone is claimed


def test_a_cleanup_request_that_freed_memory_and_a_back_off_are_one_line_each(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from crashguard.guard.cleanup import CleanupReport

    freed = CleanupReport(pid=os.getpid(), rss_before=300 * 2**20, rss_after=200 * 2**20, vram_before=None,
                          vram_after=None, seconds=0.01)
    run, one_step = make_run(tmp_path, micro_batch=4, cleanup=lambda: freed,
                             ram_thresholds=RamThresholds(0.001, 0.001))
    with run:
        control = run.hook.run_dir / "control"
        (control / "c1.json").write_text(json.dumps({"id": "c1", "action": "cleanup"}))
        one_step()
    err = capfd.readouterr().err
    assert err.count("crashguard: cleanup freed 100 MiB of RAM") >= 2  # the request's, and the RAM check's
    assert "crashguard: backed off at step 1: RAM at " in err and "micro-batch 4->2" in err
