"""The fast-spike drill (issue 22), short version: real processes only (helpers/spike_drill.py says how), in a
3 GiB memory group this test creates and removes: a guarded run whose step takes 10 s, the real sidecar at its
default 1 s interval, and an unregistered hog growing 1 GiB/s from the end of the run's first step. Critical is
1.5 GiB below the group's limit, so the limit comes ~1.5 s after critical: sooner than the 5 s the ladder waits for
a cleanup (which the run, mid-step, cannot answer). The checkpoint of the last completed step must be written
before the hog reaches the limit and at most 1 s after the first critical sample; the hog is never signalled; the
resumed run loses and repeats no step. The full drill (12 s steps, 2.4 GiB from critical to the limit, as 90 % of
24 GB) is `python -m benchmarks.spike_drill` in `make bench`; its figures are in docs/benchmarks.md."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from memory_groups import MakeGroup
from spike_drill import DrillPlan, GiB, NoRoom, run_drill

from crashguard.sidecar.escalation import CLEANUP, STOP

PLAN = DrillPlan(step_seconds=10.0, steps=2, limit=3 * GiB, to_limit=int(1.5 * GiB), warning_below=int(0.3 * GiB))
GOAL_S = 1.0  # issue 22: the checkpoint at most 1 s after the first critical sample


@pytest.mark.slow
async def test_fast_spike_drill_checkpoints_before_the_limit_within_a_second_of_critical_and_resumes_exactly(
        memory_group: MakeGroup, tmp_path: Path) -> None:
    try:
        drill = await run_drill(PLAN, memory_group(PLAN.limit), tmp_path)
    except NoRoom as exc:
        pytest.skip(str(exc))
    figures = drill.figures()
    print(f"\ndrill: {figures}")

    assert drill.hog_signals is None, f"the hog was signalled: {drill.hog_signals}"
    assert drill.hog_was_running
    assert drill.trainer_rc == 0
    # A cleanup round (at warning, or at critical when no sample fell between the two: the hog crosses the band in
    # well under a second on a loaded machine; its request waits for the step boundary), then the urgent stop of the
    # only registered run, at once: the limit was forecast sooner than the cleanup's wait.
    actions = {a["action"]: a for a in drill.actions}
    assert sorted(actions) == sorted([CLEANUP, STOP]), drill.actions
    assert actions[CLEANUP]["reason"].startswith(("RAM warning", "RAM critical")), actions[CLEANUP]
    assert actions[CLEANUP]["result"]["sidecar"] is None  # the round is the runs': no gc pause in the sidecar
    stop = drill.stop
    assert stop["result"]["ok"] and not stop["result"]["signalled"], stop
    assert "full in ~" in stop["reason"], stop["reason"]
    assert drill.status["state"] == "stopped" and "urgent" in drill.status["exit_cause"], drill.status
    completed = len(drill.steps_before_resume)
    assert completed == 1  # stopped inside step 2: its 10 s are far from over
    assert drill.checkpoint.name == f"step-{completed:08d}.pt"  # the last completed step, not the one in flight

    # In time: within a second of the first critical sample, and before the hog reached the limit.
    assert drill.hog_reached is not None, "the hog never reached its target"
    assert 0 < drill.checkpoint_at - drill.critical_at <= GOAL_S, figures
    assert drill.checkpoint_at < drill.hog_reached, figures

    # The schedule: the configured 1 s while quiet, sooner (down to its 0.1 s floor) as the spike nears the limit
    quiet, spike = drill.quiet_gaps(), drill.spike_gaps()
    assert quiet and statistics.median(quiet) >= 0.9, quiet
    # (how far down it gets depends on how long the spike lasts before the stop: at least well under the interval)
    assert spike and min(spike) <= 0.5, spike
    assert max(drill.gaps()) < 2.5 * PLAN.interval_ms / 1000, drill.gaps()

    # The recorded resume: every step once, each with its own batch: none lost, none repeated.
    assert drill.resumed_rc == 0, drill.resumed_stderr
    assert [(r["step"], r["batch"]) for r in drill.steps] == [(n + 1, n) for n in range(PLAN.steps)], drill.steps
    assert drill.final_state == "finished"
