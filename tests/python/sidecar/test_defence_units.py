"""The pieces, fast: PSI parsing and windows, the memory cgroup of a process on fixture trees (cgroup v2 and v1,
what this machine does not have), the OOM-cause rules, the pressure levels, and the trainer's high-mark ladder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from memory_groups import MakeGroup

from crashguard.guard.cleanup import CleanupReport
from crashguard.guard.high_mark import HighMarkAction, HighMarkWatch
from crashguard.monitor.memcg import MemcgDir, MemcgReading, memcg_of, read_memcg, system_oom_kills
from crashguard.monitor.pressure import PressureWindow, PsiLine, PsiReading, StallShare, parse_psi, read_psi
from crashguard.monitor.processes import ProcessMemory
from crashguard.runs.oom_cause import OomCounters, is_oom_kill, oom_cause
from crashguard.runs.registry import UNKNOWN_EXIT, RunInfo
from crashguard.sidecar.levels import Level
from crashguard.sidecar.oom_watch import OomWatch
from crashguard.sidecar.pressure import PressureLevels, forecast_message, next_pressure_level, run_resource
from crashguard.sidecar.sampler import Reading, RunGroup

MiB = 2**20
PSI = ("some avg10=12.50 avg60=3.10 avg300=0.70 total=2287963\n"
       "full avg10=3.95 avg60=0.97 avg300=0.21 total=722599\n")


def psi(some_us: int, full_us: int | None = 0, avg10: float = 0.0) -> PsiReading:
    return PsiReading(PsiLine(avg10, 0.0, 0.0, some_us), None if full_us is None else PsiLine(0.0, 0.0, 0.0, full_us))


# -- PSI ------------------------------------------------------------------------------------------------------
def test_parse_psi_and_refuse_garbage(tmp_path: Path) -> None:
    reading = parse_psi(PSI)
    assert reading is not None and reading.some == PsiLine(12.5, 3.1, 0.7, 2287963)
    assert reading.full is not None and reading.full.total_us == 722599
    assert parse_psi("some avg10=x total=1\n") is None and parse_psi("") is None
    assert parse_psi("some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n").full is None  # an old kernel's cpu file
    assert read_psi(tmp_path / "absent") is None
    assert read_psi(Path("/proc/pressure/memory")) is not None or not Path("/proc/pressure/memory").exists()


def test_the_window_gives_the_exact_stalled_share_once_half_covered() -> None:
    window = PressureWindow(10.0)
    assert window.add(0.0, psi(0, 0)) is None
    assert window.add(2.0, psi(400_000, 100_000)) is None  # 2 s: not yet half the window
    share = window.add(5.0, psi(1_000_000, 250_000))
    assert share is not None and (share.some, share.full, share.seconds) == (20.0, 5.0, 5.0)
    assert window.add(5.0, psi(1_000_000, 250_000)) == share  # the same instant again: the same share
    for t in range(6, 21):  # then a stall-free stretch: the window forgets the old stall
        share = window.add(float(t), psi(1_000_000, 250_000))
    assert share is not None and share.some == 0.0 and 10.0 <= share.seconds <= 11.0
    assert window.add(21.0, psi(5, 0)) is None  # a counter going back: another file, start over
    assert window.add(20.5, psi(9, 0)) is None  # a reading from before the last one: ignored


# -- the memory cgroup of a process, on fixture trees --------------------------------------------------------
def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_group_with_limits_events_and_pressure(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    write(root / "cgroup.controllers", "cpu memory pids\n")
    run = root / "user.slice" / "crashguard-brats-7.scope"
    write(run / "memory.current", f"{600 * MiB}\n")
    write(run / "memory.max", f"{1024 * MiB}\n")
    write(run / "memory.high", f"{800 * MiB}\n")
    write(run / "memory.stat", f"anon {500 * MiB}\ninactive_file {100 * MiB}\n")
    write(run / "memory.events", "low 0\nhigh 14\nmax 2\noom 1\noom_kill 5\noom_group_kill 0\n")
    write(run / "memory.events.local", "low 0\nhigh 14\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n")
    write(run / "memory.pressure", PSI)
    group = memcg_of(proc_cgroup="0::/user.slice/crashguard-brats-7.scope\n", root=root)
    assert group == MemcgDir(2, run, run / "memory.pressure")
    r = read_memcg(group)
    assert r is not None and (r.current, r.working_set, r.max, r.high) == (600 * MiB, 500 * MiB, 1024 * MiB, 800 * MiB)
    assert (r.high_events, r.max_events, r.oom_kills) == (14, 2, 1)  # its own kills (.local), not its children's
    assert r.pressure is not None and r.pressure.some.avg10 == 12.5
    write(run / "memory.max", "max\n")
    assert read_memcg(group).max is None  # type: ignore[union-attr]


def test_cgroup_v2_leaf_without_the_controller_is_charged_to_its_parent(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    write(root / "cgroup.controllers", "memory\n")
    write(root / "a" / "memory.current", "1\n")
    (root / "a" / "b").mkdir()
    assert memcg_of(proc_cgroup="0::/a/b\n", root=root).path == root / "a"  # type: ignore[union-attr]
    assert memcg_of(proc_cgroup="0::/\n", root=root) is None  # the root group: nothing of its own
    assert memcg_of(proc_cgroup="0::/a/../../etc\n", root=root) is None  # never outside the mount


def test_cgroup_v1_group_with_a_v2_pressure_file_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    write(root / "memory" / "memory.usage_in_bytes", "1\n")
    g = root / "memory" / "user" / "run"
    write(g / "memory.usage_in_bytes", f"{300 * MiB}\n")
    write(g / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    write(g / "memory.soft_limit_in_bytes", f"{200 * MiB}\n")
    write(g / "memory.failcnt", "3\n")
    write(g / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    write(g / "memory.stat", f"cache 1\ntotal_inactive_file {50 * MiB}\n")
    write(root / "unified" / "cgroup.controllers", "")
    write(root / "unified" / "user" / "run" / "memory.pressure", PSI)
    group = memcg_of(proc_cgroup="4:memory:/user/run\n0::/user/run\n", root=root)
    assert group is not None and group.version == 1 and group.pressure == root / "unified/user/run/memory.pressure"
    r = read_memcg(group)
    assert r == MemcgReading(1, str(g), 300 * MiB, 250 * MiB, None, 200 * MiB, None, 3, 2, parse_psi(PSI))


def test_a_process_in_a_real_memory_group_is_found_there_with_its_limit(memory_group: MakeGroup) -> None:
    """memcg_of and read_memcg on a group the kernel keeps (made under this test process's own group; skipped
    with the reason where none is writable), not a fixture tree."""
    group = memory_group(256 * MiB)
    child = group.spawn([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        found = memcg_of(child.pid)
        assert found is not None and (found.version, found.path) == (group.version, group.path), found
        reading = read_memcg(found)
        assert reading is not None and reading.max == 256 * MiB and reading.oom_kills == 0, reading
        assert 0 < reading.current <= 256 * MiB, reading  # the child's interpreter, charged to its group
    finally:
        child.kill()
        child.wait(timeout=10)


def _vmstat_oom_kills() -> int:
    return int(dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())["oom_kill"])


def test_the_systems_oom_kill_count_is_the_kernels() -> None:
    # Other jobs on this machine may be OOM-killed meanwhile: the reading lies between two reads of our own.
    before = _vmstat_oom_kills()
    value = system_oom_kills()
    assert value is not None and before <= value <= _vmstat_oom_kills()


# -- the cause of a death -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("before", "after", "sigkill", "cause"), [
    ((1, 5), (2, 6), True, "killed by the kernel's OOM killer (SIGKILL; its memory cgroup counted 1 OOM kill)"),
    ((1, 5), (2, 6), None, "killed by the kernel's OOM killer (its memory cgroup counted 1 OOM kill)"),
    ((1, 5), (1, 6), True, None),  # its own group counted nothing: a kill elsewhere, not this one
    ((None, 5), (None, 6), True, "killed by the kernel's OOM killer (SIGKILL while the system's OOM-kill count "
                                 "rose by 1)"),
    ((None, 5), (None, 7), None, "probably killed by the kernel's OOM killer (it vanished while the system's "
                                 "OOM-kill count rose by 2)"),
    ((1, 5), (None, 6), True, "killed by the kernel's OOM killer (SIGKILL while the system's OOM-kill count "
                              "rose by 1)"),  # its group is gone: the system's counter decides
    ((1, 5), (2, 6), False, None),  # another signal or an exit code
    ((None, 5), (None, 5), True, None),  # a plain kill -9
])
def test_oom_cause_rules(before: tuple[int | None, int | None], after: tuple[int | None, int | None],
                         sigkill: bool | None, cause: str | None) -> None:
    found = oom_cause(OomCounters(*before), OomCounters(*after), sigkill)
    assert found == cause
    assert is_oom_kill(found) is (cause is not None)


# -- pressure levels ----------------------------------------------------------------------------------------
def share(some: float, full: float | None = 0.0) -> StallShare:
    return StallShare(some, full, 10.0, some, full)


def test_pressure_level_enters_on_some_or_full_and_leaves_with_hysteresis() -> None:
    assert next_pressure_level(Level.NORMAL, share(19.9, 4.9), 20, 5) is Level.NORMAL
    assert next_pressure_level(Level.NORMAL, share(20.0), 20, 5) is Level.WARNING
    assert next_pressure_level(Level.NORMAL, share(6.0, 5.0), 20, 5) is Level.WARNING  # "full" alone
    assert next_pressure_level(Level.WARNING, share(16.0, 1.0), 20, 5) is Level.WARNING  # within 3/4
    assert next_pressure_level(Level.WARNING, share(14.0, 3.0), 20, 5) is Level.NORMAL
    levels = PressureLevels()
    level, change = levels.judge("Memory pressure", share(30.0, 2.0), 20, 5, record=True)
    assert level is Level.WARNING and change is not None
    assert change.message == ("Memory pressure: tasks stalled 30% of the last 10 s waiting for memory (some; "
                              "warning at 20%)")
    assert levels.judge("Memory pressure", share(31.0), 20, 5, record=True)[1] is None  # no repeat
    assert levels.judge("Memory pressure", None, 20, 5, record=True) == (Level.WARNING, None)  # no figure: kept
    assert run_resource("brats", 1) == "Memory pressure (brats rank 1)"


def test_pressure_forecast_lines() -> None:
    assert forecast_message("Memory pressure", share(30.0), Level.WARNING, 20, 5, 62.0) == (
        "Memory pressure: stalled 30% of the last 10 s (some) with RAM at 62%: expect slowdowns; the OOM killer "
        "may act before RAM looks full")
    assert forecast_message("Memory pressure", share(12.0), Level.NORMAL, 20, 5, 50.0) == (
        "Memory pressure rising: stalled 12% of the last 10 s (some; warning at 20%)")
    assert forecast_message("Memory pressure", share(2.0), Level.NORMAL, 20, 5, 50.0) is None


# -- the trainer's high mark -----------------------------------------------------------------------------------
def reading(working_set: int, high_events: int | None = None, stall: float = 0.0) -> MemcgReading:
    pressure = PsiReading(PsiLine(stall, 0.0, 0.0, 0), None)
    return MemcgReading(2, "/cg/run", working_set, working_set, 1000 * MiB, 800 * MiB, high_events, 0, 0, pressure)


class Script:
    """The readings a watch gets, one per read, and the cleanups it asked for."""

    def __init__(self, *readings: MemcgReading) -> None:
        self.readings = list(readings)
        self.cleanups = 0

    def read(self, _group: MemcgDir) -> MemcgReading:
        return self.readings.pop(0)

    def cleanup(self) -> CleanupReport:
        self.cleanups += 1
        return CleanupReport(pid=1, rss_before=10 * MiB, rss_after=0, vram_before=None, vram_after=None, seconds=0.0)


def watch(script: Script) -> HighMarkWatch:
    return HighMarkWatch(MemcgDir(2, Path("/cg/run")), reader=script.read)


def test_the_ladder_cleanup_then_backoff_then_stop() -> None:
    over = reading(820 * MiB)
    s = Script(reading(700 * MiB), over, over, over, over)
    w = watch(s)
    assert w.check(True, s.cleanup).action is HighMarkAction.NONE
    first = w.check(True, s.cleanup)  # over: cleanup, still over after it, so back off at once
    assert first.action is HighMarkAction.BACKOFF and s.cleanups == 1
    assert first.message == ("memory high mark: working set 820 MiB over the high mark 800 MiB, hard limit 1000 MiB; "
                             "cleanup freed 10 MiB; backing off")
    stop = w.check(False, s.cleanup)  # still over at the smallest micro-batch
    assert stop.action is HighMarkAction.STOP and s.cleanups == 1
    assert stop.message is not None and stop.message.endswith("checkpoint and stop before the kernel's OOM killer acts")
    assert w.over_high == 2 and w.status_fields()["memory_over_high"] == 2


def test_cleanup_alone_can_bring_it_back_and_the_next_episode_starts_over() -> None:
    s = Script(reading(820 * MiB), reading(790 * MiB), reading(700 * MiB), reading(820 * MiB), reading(790 * MiB))
    w = watch(s)
    assert w.check(True, s.cleanup).action is HighMarkAction.CLEANUP
    back = w.check(True, s.cleanup)
    assert back.action is HighMarkAction.NONE and back.message is not None and "back under" in back.message
    assert w.check(True, s.cleanup).action is HighMarkAction.CLEANUP and s.cleanups == 2


def test_too_close_to_the_hard_limit_stops_at_once() -> None:
    s = Script(reading(950 * MiB))  # past high + half the way to max (900 MiB)
    check = watch(s).check(True, s.cleanup)
    assert check.action is HighMarkAction.STOP and s.cleanups == 0
    assert check.message is not None and "too close to the hard limit" in check.message


def test_kernel_throttling_counts_only_when_it_hurts() -> None:
    s = Script(reading(700 * MiB, high_events=3), reading(700 * MiB, high_events=9, stall=2.0),
               reading(700 * MiB, high_events=15, stall=25.0), reading(700 * MiB, high_events=15, stall=25.0))
    w = watch(s)
    assert w.check(True, s.cleanup).action is HighMarkAction.NONE
    assert w.check(True, s.cleanup).action is HighMarkAction.NONE  # page cache reclaimed at the mark: free
    hurt = w.check(True, s.cleanup)  # throttled again and stalling 25 %: act (cleanup, then no new events)
    assert hurt.action is HighMarkAction.CLEANUP and hurt.message is not None
    assert "throttled by the kernel 6 times at the high mark 800 MiB, stalled 25%" in hurt.message
    assert w.throttled == 12 and w.status_fields()["memory_high_events"] == 12


# -- the sidecar's verdict on a run that vanished -------------------------------------------------------------
def _info(state: str, alive: bool, pid: int = 42, cause: str | None = None) -> RunInfo:
    return RunInfo(name="brats", dir="/runs/brats", pid=pid, rank=0, world_size=1, state=state, alive=alive, step=9,
                   epoch=0, micro_batch=2, accumulation=2, loss=0.5, peak_rss=1, tree_rss=None, vram=None,
                   last_event=None, exit_cause=cause, config=None, checkpoint=None, started=1.0, updated=2.0)


def _reading(info: RunInfo, group_kills: int | None, system: int, top: list[ProcessMemory]) -> Reading:
    groups = {("brats", 0): RunGroup(42, MemcgDir(1, Path("/nonexistent/group")), group_kills)} if info.alive else {}
    return Reading(time=1.0, ram=None, gpus=[], gpu_reason=None, top=top, records=[], runs=[info],  # type: ignore[arg-type]
                   cost_ms=0.1, system_oom_kills=system, run_groups=groups)


def test_the_sidecar_judges_a_vanished_run_by_the_counters_of_the_samples_before() -> None:
    heavy = [ProcessMemory(42, "python3", 900 * MiB), ProcessMemory(7, "code", 800 * MiB)]
    watch = OomWatch()
    for system in (5, 6):  # two samples alive; the kill was counted (6) while it still looked alive
        watch.observe(watch.explain(_reading(_info("running", True), None, system, heavy)))
    dead = _info("crashed", False, cause=UNKNOWN_EXIT)
    explained = watch.explain(_reading(dead, None, 6, []))
    cause = explained.runs[0].exit_cause
    assert cause == ("probably killed by the kernel's OOM killer (it vanished while the system's OOM-kill count "
                     "rose by 1)")
    assert watch.heaviest(explained.runs[0]) == heavy
    assert watch.explain(_reading(dead, None, 9, [])).runs[0].exit_cause == cause  # kept, not judged again
    other = _info("crashed", False, pid=43, cause=UNKNOWN_EXIT)  # never seen alive by this sidecar: no verdict
    assert watch.explain(_reading(other, None, 12, [])).runs[0].exit_cause == UNKNOWN_EXIT
    supervised = _info("crashed", False, cause="killed by signal 9 (SIGKILL)")  # recorded by its supervisor
    assert watch.explain(_reading(supervised, None, 20, [])).runs[0].exit_cause == "killed by signal 9 (SIGKILL)"
