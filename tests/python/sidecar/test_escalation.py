"""The escalation ladder's decisions (Ladder, a fake clock) and their execution (Escalation, its own workers)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from crashguard.runs.control import CleanupResult, StopResult
from crashguard.runs.registry import RunInfo
from crashguard.sidecar.escalation import (
    CLEANUP,
    STOP,
    TERMINATE,
    Escalation,
    Ladder,
    Observation,
    Position,
    Rung,
    Step,
    Timings,
    heaviest,
)
from crashguard.sidecar.levels import Level
from crashguard.sidecar.settings import Settings

T = Timings(cleanup_timeout=10, critical_cleanup_timeout=5, settle=0.5, stop_timeout=30, cleanup_cooldown=30,
            stop_cooldown=60)
AUTO = Settings(auto_cleanup=True)
STOPS = Settings(critical_action="checkpointAndStop")
BOTH = Settings(auto_cleanup=True, critical_action="checkpointAndStop")
PERCENT = {"normal": 50.0, "warning": 85.0, "critical": 95.0}


def obs(level: str, percent: float | None = None, resource: str = "RAM") -> Observation:
    return Observation(resource, Level(level), PERCENT[level] if percent is None else percent, 80.0, 90.0)


def rungs(steps: list[Step]) -> list[tuple[str, str]]:
    return [(s.rung.value, s.resource) for s in steps]


# -- Ladder: the decisions --------------------------------------------------------------------------------------
def test_warning_with_auto_cleanup_cleans_once_per_episode_and_respects_the_cooldown() -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs("warning")], AUTO, 0.0)
    assert (round_.rung, round_.timeout, round_.urgent) == (Rung.CLEANUP, 10, False)
    assert round_.reason == "RAM warning (85% >= 80%)"
    assert ladder.on_sample([obs("warning")], AUTO, 1.0) == []  # in flight
    ladder.finished(round_, 2.0)
    assert ladder.on_sample([obs("warning")], AUTO, 3.0) == []  # once per episode
    assert ladder.on_sample([obs("critical")], AUTO, 4.0) == []  # no critical action: nothing more
    assert ladder.on_sample([obs("normal")], AUTO, 5.0) == []
    assert ladder.on_sample([obs("warning")], AUTO, 6.0) == []  # a new episode, but within the cooldown
    assert ladder.on_sample([obs("normal")], AUTO, 40.0) == []
    assert rungs(ladder.on_sample([obs("warning")], AUTO, 41.0)) == [("cleanup", "RAM")]
    assert Ladder(T).on_sample([obs("warning")], Settings(), 0.0) == []  # autoCleanup off


def test_critical_climbs_cleanup_then_urgent_stop_each_once_then_again_after_the_cooldown() -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs("critical")], STOPS, 0.0)  # cleanup first, even without autoCleanup
    assert (round_.rung, round_.timeout) == (Rung.CLEANUP, 5)  # the critical round waits less
    assert ladder.position("RAM") is Position.CLEANING
    assert ladder.on_sample([obs("critical")], STOPS, 1.0) == []
    ladder.finished(round_, 1.5)
    assert ladder.on_sample([obs("critical")], STOPS, 1.6) == []  # its effect is judged from 2.0
    assert ladder.position("RAM") is Position.SETTLING
    [stop] = ladder.on_sample([obs("critical")], STOPS, 2.0)
    assert (stop.rung, stop.resource, stop.urgent, stop.timeout) == (Rung.STOP, "RAM", True, 30)
    assert stop.reason == "RAM critical (95% >= 90%)"
    for t in (3.0, 10.0, 20.0):  # the stop is in flight: nothing is repeated
        assert ladder.on_sample([obs("critical")], STOPS, t) == []
    ladder.finished(stop, 25.0)
    assert ladder.on_sample([obs("critical")], STOPS, 26.0) == []
    assert ladder.position("RAM") is Position.DONE
    assert ladder.on_sample([obs("critical")], STOPS, 61.0) == []  # stop cooldown: 60 s from 2.0
    assert ladder.on_sample([obs("critical")], STOPS, 62.0) == []
    assert ladder.position("RAM") is Position.IDLE
    assert rungs(ladder.on_sample([obs("critical")], STOPS, 62.5)) == [("cleanup", "RAM")]  # the next climb


def test_warning_to_critical_while_a_cleanup_round_is_in_flight_does_not_lose_the_stop() -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs("warning")], BOTH, 0.0)
    assert round_.timeout == 10
    assert ladder.on_sample([obs("critical")], BOTH, 1.0) == []  # joins the round in flight
    assert ladder.position("RAM") is Position.CLEANING
    ladder.finished(round_, 3.0)
    assert ladder.on_sample([obs("critical")], BOTH, 3.2) == []
    assert rungs(ladder.on_sample([obs("critical")], BOTH, 3.5)) == [("checkpointAndStop", "RAM")]


@pytest.mark.parametrize("start", ["warning", "critical"])
def test_a_run_that_never_answers_cleanup_still_gets_stopped(start: str) -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs(start)], BOTH, 0.0)
    critical_at = 1.0 if start == "warning" else 0.0
    assert ladder.on_sample([obs("critical")], BOTH, critical_at) == []
    # The round never ends (a run in a 15 s step); the ladder waits critical_cleanup_timeout, then stops.
    assert ladder.on_sample([obs("critical")], BOTH, critical_at + 4.9) == []
    [stop] = ladder.on_sample([obs("critical")], BOTH, critical_at + 5.0)
    assert stop.rung is Rung.STOP and stop.urgent
    assert {s.rung for s in ladder.in_flight} == {Rung.CLEANUP, Rung.STOP}  # both in flight together
    ladder.finished(round_, 12.0)
    assert ladder.on_sample([obs("critical")], BOTH, 13.0) == []  # a late round changes nothing


def test_no_stop_when_the_cleanup_brought_use_below_critical() -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs("critical")], STOPS, 0.0)
    ladder.finished(round_, 1.0)
    # Still "critical" by hysteresis (within 3 points), but below the threshold: wait, do not stop.
    assert ladder.on_sample([obs("critical", 88.0)], STOPS, 2.0) == []
    assert ladder.on_sample([obs("critical", 89.9)], STOPS, 3.0) == []
    assert rungs(ladder.on_sample([obs("critical", 90.0)], STOPS, 4.0)) == [("checkpointAndStop", "RAM")]

    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs("critical")], STOPS, 0.0)
    ladder.finished(round_, 1.0)
    assert ladder.on_sample([obs("warning")], STOPS, 2.0) == []  # back below critical: the ladder starts over
    assert ladder.position("RAM") is Position.IDLE
    assert ladder.on_sample([obs("normal")], STOPS, 3.0) == []


def test_a_dip_below_critical_and_back_does_not_repeat_the_cleanup_nor_lose_the_stop() -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs("critical")], STOPS, 0.0)
    ladder.finished(round_, 1.0)
    assert ladder.on_sample([obs("warning")], STOPS, 1.2) == []
    # Critical again within the cleanup cooldown: the round 1 s ago counts, straight to the stop.
    assert rungs(ladder.on_sample([obs("critical")], STOPS, 2.0)) == [("checkpointAndStop", "RAM")]


def test_cooldowns_are_per_rung_and_per_resource() -> None:
    ladder = Ladder(T)
    gpu = "GPU 0"
    [ram_round] = ladder.on_sample([obs("warning"), obs("normal", resource=gpu)], BOTH, 0.0)
    ladder.finished(ram_round, 1.0)
    # GPU 0's own cleanup is not held back by RAM's cooldown.
    [gpu_round] = ladder.on_sample([obs("warning"), obs("warning", resource=gpu)], BOTH, 5.0)
    assert (gpu_round.rung, gpu_round.resource) == (Rung.CLEANUP, gpu)
    # RAM critical within its cleanup cooldown: the cleanup rung is already done; the stop is not held back.
    [ram_stop] = ladder.on_sample([obs("critical"), obs("warning", resource=gpu)], BOTH, 6.0)
    assert (ram_stop.rung, ram_stop.resource) == (Rung.STOP, "RAM")
    ladder.finished(gpu_round, 6.5)
    # GPU 0 critical while RAM's stop is in flight: one stop at a time, GPU 0 waits ...
    assert ladder.on_sample([obs("critical"), obs("critical", resource=gpu)], BOTH, 7.0) == []
    ladder.finished(ram_stop, 9.0)
    # ... and then stops its own heaviest run: RAM's stop cooldown does not apply to it.
    assert rungs(ladder.on_sample([obs("critical"), obs("critical", resource=gpu)], BOTH, 9.5)) == [
        ("checkpointAndStop", gpu)]


def test_both_resources_joining_one_round_are_both_served_by_it() -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([obs("critical"), obs("critical", resource="GPU 0")], STOPS, 0.0)
    assert round_.reason == "RAM critical (95% >= 90%), GPU 0 critical (95% >= 90%)"
    ladder.finished(round_, 1.0)
    first = ladder.on_sample([obs("critical"), obs("critical", resource="GPU 0")], STOPS, 2.0)
    assert rungs(first) == [("checkpointAndStop", "RAM")]
    assert ladder.position("GPU 0") is Position.SETTLING  # its turn comes when RAM's stop has ended


def limit_in(seconds: float | None, percent: float = 95.0, resource: str = "RAM") -> Observation:
    """A critical observation whose forecast says the limit comes in `seconds`."""
    return Observation(resource, Level.CRITICAL, percent, 80.0, 90.0, seconds)


def test_a_limit_forecast_sooner_than_the_cleanup_wait_stops_at_once() -> None:
    # The spike: 1 GB/s from 90 % of 24 GB reaches the limit in ~2.4 s; the cleanup would be waited 5 s.
    ladder = Ladder(T)
    round_, stop = ladder.on_sample([limit_in(2.4)], BOTH, 0.0)
    assert (round_.rung, stop.rung, stop.urgent) == (Rung.CLEANUP, Rung.STOP, True)  # the same sample
    assert stop.reason == "RAM critical (95% >= 90%, full in ~2.4 s)"
    assert ladder.on_sample([limit_in(1.0)], BOTH, 0.2) == []  # one stop at a time
    # The wait is the round's 5 s and the settle's 0.5 s; a stop needs stop_lead (1 s) to take effect: a limit 6.4 s
    # away is not waited for, one 6.6 s away is.
    assert rungs(Ladder(T).on_sample([limit_in(6.4)], BOTH, 0.0)) == [("cleanup", "RAM"), ("checkpointAndStop", "RAM")]
    assert rungs(Ladder(T).on_sample([limit_in(6.6)], BOTH, 0.0)) == [("cleanup", "RAM")]


def test_the_wait_is_judged_again_on_every_sample_as_the_forecast_moves() -> None:
    ladder = Ladder(T)
    [round_] = ladder.on_sample([limit_in(None)], STOPS, 0.0)  # not rising: the usual wait
    assert ladder.on_sample([limit_in(300.0)], STOPS, 1.0) == []  # rising slowly: still worth the wait
    # 3 s into the 5 s wait the fill speeds up: the limit in 3 s, sooner than 2 s of wait, 0.5 s settle and 1 s lead.
    [stop] = ladder.on_sample([limit_in(3.0)], STOPS, 3.0)
    assert stop.rung is Rung.STOP
    # Waiting for the effect of a round that has ended (settle 0.5 s) is bounded too.
    ladder = Ladder(T)
    [round_] = ladder.on_sample([limit_in(None)], STOPS, 0.0)
    ladder.finished(round_, 1.0)
    assert ladder.on_sample([limit_in(2.0)], STOPS, 1.1) == []  # 0.4 s + 1 s lead < 2 s: wait for the effect
    [stop] = ladder.on_sample([limit_in(1.2)], STOPS, 1.2)  # 0.3 s + 1 s > 1.2 s: now
    assert stop.rung is Rung.STOP


def test_a_near_limit_never_stops_below_the_critical_threshold_nor_without_the_critical_action() -> None:
    ladder = Ladder(T)
    ladder.on_sample([limit_in(None, percent=91.0)], STOPS, 0.0)
    # Back under the threshold (critical by hysteresis): the forecast alone stops nothing.
    assert ladder.on_sample([limit_in(0.5, percent=89.0)], STOPS, 0.1) == []
    assert rungs(ladder.on_sample([limit_in(0.5, percent=90.0)], STOPS, 0.2)) == [("checkpointAndStop", "RAM")]
    ladder = Ladder(T)
    taken = [s for t in range(0, 20) for s in ladder.on_sample([limit_in(0.1)], AUTO, float(t))]
    assert rungs(taken) == [("cleanup", "RAM")]


def test_critical_action_none_never_stops() -> None:
    ladder = Ladder(T)
    taken = [s for t in range(0, 300, 2) for s in ladder.on_sample([obs("critical")], AUTO, float(t))]
    assert rungs(taken) == [("cleanup", "RAM")]


def test_a_resource_that_disappears_is_forgotten() -> None:
    ladder = Ladder(T)
    ladder.on_sample([obs("critical", resource="GPU 1")], STOPS, 0.0)
    ladder.on_sample([], STOPS, 1.0)
    assert ladder.position("GPU 1") is Position.IDLE


# -- heaviest -------------------------------------------------------------------------------------------------
def info(name: str, pid: int, rank: int = 0, alive: bool = True, vram: int | None = None,
         tree_rss: int | None = None) -> RunInfo:
    return RunInfo(name=name, dir=f"/runs/{name}", pid=pid, rank=rank, world_size=1, state="running", alive=alive,
                   step=1, epoch=0, micro_batch=None, accumulation=None, loss=None, peak_rss=None, tree_rss=tree_rss,
                   vram=vram, last_event=None, exit_cause=None, config=None, checkpoint=None, started=None,
                   updated=None)


def test_heaviest_ranks_by_the_footprint_not_by_summed_rss_and_sums_ranks() -> None:
    pss = {1: 300, 2: 200, 3: 150, 4: 900}
    runs = [info("forked", 1, tree_rss=2000), info("ddp", 2, rank=0, tree_rss=200),
            info("ddp", 3, rank=1, tree_rss=150), info("gone", 4, alive=False)]
    victim = heaviest(runs, "RAM", footprint=pss.get)
    assert victim is not None and (victim.run, victim.used, victim.measure) == ("ddp", 350, "PSS")
    assert "ddp used the most (PSS" in victim.describe()
    assert heaviest([info("x", 9)], "RAM", footprint=lambda pid: None) is None  # unreadable: never a victim
    assert heaviest([], "RAM") is None


def test_heaviest_for_a_gpu_uses_vram() -> None:
    runs = [info("a", 1, vram=2 * 2**30), info("b", 2, vram=5 * 2**30), info("c", 3, vram=None)]
    victim = heaviest(runs, "GPU 0", footprint=lambda pid: pytest.fail("no PSS for a GPU"))
    assert victim is not None and (victim.run, victim.measure) == ("b", "VRAM")
    assert heaviest([info("c", 3)], "GPU 0") is None


# -- Escalation: the steps run off the sampling thread ----------------------------------------------------------
@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Recorder:
    """Real threads and events; only the actions' effects are stand-ins (the real ones are tested with real
    processes in test_sidecar_ladder.py)."""

    answer_cleanup: threading.Event = field(default_factory=threading.Event)
    signalled: bool = False
    reports: list[tuple[str, str, object]] = field(default_factory=list)
    stops: list[tuple[str, float, bool]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def report(self, action: str, reason: str, result: object) -> None:
        self.reports.append((action, reason, result))
        if action != CLEANUP:
            self.done.set()

    def cleanup(self, timeout: float) -> CleanupResult:
        self.answer_cleanup.wait(timeout)
        return CleanupResult(ram_before=10, ram_after=9, sidecar=None)

    def stop(self, run: str, run_dir: str, timeout: float, urgent: bool) -> StopResult:
        self.stops.append((run, timeout, urgent))
        return StopResult(run, True, "stopped", "/ckpt", "stopped", self.signalled)

    def runs(self) -> list[RunInfo]:
        return [info("small", 1), info("big", 2)]


def escalation(rec: Recorder, clock: Clock) -> Escalation:
    return Escalation(rec.report, rec.cleanup, rec.stop, rec.runs, T, clock,
                      footprint={1: 100 * 2**20, 2: 900 * 2**20}.get)


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("signalled", [False, True])
def test_each_rung_is_reported_once_and_the_heaviest_run_is_stopped_urgently(signalled: bool) -> None:
    rec, clock = Recorder(signalled=signalled), Clock()
    esc = escalation(rec, clock)
    try:
        rec.answer_cleanup.set()
        assert rungs(esc.on_sample([obs("critical")], STOPS)) == [("cleanup", "RAM")]
        wait_until(lambda: not esc.ladder.in_flight)
        for t in (0.1, 0.5, 1.0, 2.0, 3.0):
            clock.now = t
            esc.on_sample([obs("critical")], STOPS)
        assert rec.done.wait(10)
        wait_until(lambda: not esc.ladder.in_flight)
        for t in (4.0, 30.0, 61.0):
            clock.now = t
            esc.on_sample([obs("critical")], STOPS)
        assert rec.stops == [("big", 30, True)]
        actions = [a for a, _, _ in rec.reports]
        assert actions == ([CLEANUP, STOP, TERMINATE] if signalled else [CLEANUP, STOP])
        assert rec.reports[1][1].startswith("RAM critical (95% >= 90%); big used the most (PSS 0.88 GiB)")
        if signalled:
            assert "did not answer checkpoint-and-stop within 30 s: sent SIGTERM" in rec.reports[2][1]
    finally:
        esc.close()


def test_a_cleanup_that_never_answers_neither_blocks_sampling_nor_the_stop() -> None:
    rec, clock = Recorder(), Clock()
    esc = escalation(rec, clock)
    try:
        esc.on_sample([obs("warning")], BOTH)  # the round starts and hangs (its runs are in long steps)
        wait_until(lambda: esc.ladder.in_flight)
        clock.now = 1.0
        started = time.perf_counter()
        for _ in range(100):  # decisions are cheap and never wait on an action
            esc.on_sample([obs("critical")], BOTH)
        assert time.perf_counter() - started < 1.0
        clock.now = 6.0  # critical_cleanup_timeout after critical
        assert rungs(esc.on_sample([obs("critical")], BOTH)) == [("checkpointAndStop", "RAM")]
        assert rec.done.wait(10)
        assert rec.stops == [("big", 30, True)] and [a for a, _, _ in rec.reports] == [STOP]
        rec.answer_cleanup.set()  # the round ends late: reported then, once
        wait_until(lambda: len(rec.reports) == 2)
        assert [a for a, _, _ in rec.reports] == [STOP, CLEANUP]
    finally:
        rec.answer_cleanup.set()
        esc.close()


def test_nothing_to_stop_is_logged_and_reported_as_no_action(caplog: pytest.LogCaptureFixture) -> None:
    rec, clock = Recorder(), Clock()
    rec.runs = lambda: []  # type: ignore[method-assign]
    esc = escalation(rec, clock)
    try:
        rec.answer_cleanup.set()
        esc.on_sample([obs("critical")], STOPS)
        wait_until(lambda: not esc.ladder.in_flight)
        clock.now = 1.0
        assert rungs(esc.on_sample([obs("critical")], STOPS)) == [("checkpointAndStop", "RAM")]
        wait_until(lambda: not esc.ladder.in_flight)
        assert [a for a, _, _ in rec.reports] == [CLEANUP] and rec.stops == []
        assert "no guarded run uses it" in caplog.text
    finally:
        esc.close()
