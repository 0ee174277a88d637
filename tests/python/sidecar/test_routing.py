"""Where the shared monitor's notifications go (routing.Router) and how it combines the windows' settings (hub.Hub),
without a process: a fake core stands in for the Sidecar, windows are keys."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crashguard.sidecar import protocol as p
from crashguard.sidecar.daemon import SocketWriter
from crashguard.sidecar.hub import Hub
from crashguard.sidecar.routing import CRASHES_REMEMBERED, Router
from crashguard.sidecar.settings import Settings

A, B, C = Path("/work/a/runs"), Path("/work/b/runs"), Path("/work/c/runs")


def warning(level: str = "warning") -> dict[str, Any]:
    return {"resource": "RAM", "level": level}


def run_event(event: str, run_dir: Path, rank: int = 0) -> dict[str, Any]:
    return {"event": event, "run": {"dir": str(run_dir), "name": run_dir.name, "rank": rank}}


def router(*dirs: frozenset[Path]) -> Router:
    r = Router()
    for key, owned in enumerate(dirs, start=1):
        r.listen(key, owned)
    return r


def test_a_warning_goes_to_the_focused_window_else_the_last_focused_else_the_last_joined() -> None:
    r = router(frozenset({A}), frozenset({B}), frozenset({C}))
    assert r.targets(p.WARNING, warning()) == [3]  # nobody reported focus: the one that joined last
    r.focus(1, True, now=10.0)
    assert r.targets(p.WARNING, warning("critical")) == [1]
    r.focus(2, True, now=11.0)  # two say focused (two browser pages): the later report wins
    assert r.targets(p.WARNING, warning()) == [2]
    r.focus(2, False, now=12.0)
    assert r.targets(p.WARNING, warning()) == [1]
    r.focus(1, False, now=13.0)
    assert r.targets(p.WARNING, warning()) == [2]  # none focused: the most recently focused
    r.leave(2)
    assert r.targets(p.WARNING, warning()) == [1]
    # A return to normal re-arms every window; samples, actions and logs go to every window.
    for method, params in ((p.WARNING, warning("normal")), (p.SAMPLE, {}), (p.ACTION, {}), ("window/logMessage", {})):
        assert sorted(r.targets(method, params)) == [1, 3]


def test_a_window_that_never_initialized_gets_nothing() -> None:
    r = router(frozenset({A}))
    r.join(2)  # connected (a starter's probe, or initialize not yet answered)
    r.focus(2, True, now=5.0)
    assert r.targets(p.WARNING, warning()) == [1]
    assert r.targets(p.SAMPLE, {}) == [1]
    assert Router().targets(p.WARNING, warning()) == []


def test_a_run_event_goes_to_the_windows_holding_the_run_and_a_crash_once_per_run() -> None:
    r = router(frozenset({A}), frozenset({A, B}), frozenset({C}))
    assert r.targets(p.RUN_EVENT, run_event("started", B / "brats")) == [2]
    assert r.targets(p.RUN_EVENT, run_event("started", A / "ddp", rank=1)) == [1, 2]
    assert r.targets(p.RUN_EVENT, run_event("crashed", A / "ddp", rank=1)) == [1, 2]
    assert r.targets(p.RUN_EVENT, run_event("crashed", A / "ddp", rank=0)) == []  # the same run's other rank
    assert r.targets(p.RUN_EVENT, run_event("hung", A / "ddp", rank=0)) == [1, 2]  # only crashes are once per run
    assert r.targets(p.RUN_EVENT, run_event("started", A / "ddp")) == [1, 2]  # resumed: its next crash is news
    assert r.targets(p.RUN_EVENT, run_event("crashed", A / "ddp")) == [1, 2]
    assert r.targets(p.RUN_EVENT, run_event("crashed", Path("/elsewhere/runs/x"))) == []  # nobody's folder
    assert r.runs_dirs() == [A, B, C]


def test_the_crashes_remembered_are_bounded() -> None:
    r = router(frozenset({A}))
    for i in range(CRASHES_REMEMBERED + 10):
        r.targets(p.RUN_EVENT, run_event("crashed", A / f"run-{i}"))
    assert len(r._crashes_told) == CRASHES_REMEMBERED
    assert r.targets(p.RUN_EVENT, run_event("crashed", A / "run-0")) == [1]  # the oldest was forgotten


def test_a_ladder_action_reaches_every_window_and_is_a_toast_in_one() -> None:
    r = router(frozenset({A}), frozenset({B}), frozenset({C}))
    r.focus(2, True, now=1.0)
    action = {"action": "cleanup", "reason": "RAM critical (93% >= 90%)", "result": {}}
    # Every window logs it; only the window a warning would go to shows it.
    assert r.deliveries(p.ACTION, action) == [([2], {**action, "notify": True}),
                                              ([1, 3], {**action, "notify": False})]
    assert action == {"action": "cleanup", "reason": "RAM critical (93% >= 90%)", "result": {}}  # not edited
    r.focus(2, False, now=2.0)
    r.focus(3, True, now=3.0)
    assert [(keys, sent["notify"]) for keys, sent in r.deliveries(p.ACTION, action)] == [([3], True), ([1, 2], False)]
    # One window (stdio, or the only one left): its toast.
    assert router(frozenset({A})).deliveries(p.ACTION, action) == [([1], {**action, "notify": True})]
    # Anything else: one group, as it came.
    sample = {"ram": {"percent": 50.0}}
    assert r.deliveries(p.SAMPLE, sample) == [([1, 2, 3], sample)]
    assert r.deliveries(p.WARNING, warning()) == [([3], warning())]
    assert Router().deliveries(p.ACTION, action) == []  # nobody listening


def test_the_hub_frames_an_action_once_per_group() -> None:
    hub, _ = shared_hub()
    conns = [Conn(1), Conn(2), Conn(3)]
    for conn in conns:
        hub.join(conn, Settings())
        hub.ready(conn)
    hub.focus(conns[0], True)
    hub._deliver(p.ACTION, {"action": "checkpointAndStop", "reason": "RAM critical", "result": {}})
    bodies = [json.loads(conn.sent[-1][1].split(b"\r\n\r\n", 1)[1]) for conn in conns]
    assert [body["params"]["notify"] for body in bodies] == [True, False, False]
    assert conns[1].sent[-1] == conns[2].sent[-1]  # the same bytes for the windows that only log it
    hub.close()


@dataclass
class FakeCore:
    settings: Settings
    applied: list[Settings] = field(default_factory=list)

    def apply_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.applied.append(settings)

    def tick(self) -> None:
        pass

    def next_delay(self) -> float:
        return 60.0  # a test's hub that starts sampling ticks once, then waits

    def close(self) -> None:
        pass


@dataclass
class Conn:
    key: int
    sent: list[tuple[str, Any]] = field(default_factory=list)

    def send(self, method: str, params: Any) -> None:
        self.sent.append((method, params))

    def send_frame(self, frame: bytes) -> None:
        self.sent.append(("frame", frame))


def shared_hub() -> tuple[Hub, list[FakeCore]]:
    cores: list[FakeCore] = []

    def make(settings: Settings, emit: Any) -> Any:
        cores.append(FakeCore(settings))
        return cores[-1]

    return Hub(shared=True, sidecar_factory=make), cores


def test_the_runs_directories_are_the_union_and_the_host_values_the_latest_update() -> None:
    hub, cores = shared_hub()
    one, two = Conn(1), Conn(2)
    hub.join(one, Settings(runs_directories=(str(A),), ram_warning_percent=70.0))
    hub.join(two, Settings(runs_directories=(str(B),), ram_warning_percent=75.0))
    [core] = cores  # one core, created by the first window
    assert core.settings.runs_directories == (str(A), str(B))
    assert core.settings.ram_warning_percent == 75.0  # the most recent window's
    hub.update(one, Settings(runs_directories=(str(A), str(C)), ram_warning_percent=60.0))
    assert core.settings.runs_directories == (str(A), str(C), str(B)) and core.settings.ram_warning_percent == 60.0
    # A partial update applies on top of the values in force, with the window's own folders.
    mine = hub.settings_for(two)
    assert mine is not None and mine.ram_warning_percent == 60.0 and mine.runs_directories == (str(B),)
    hub.leave(one)
    assert core.settings.runs_directories == (str(B),) and not hub.closed
    # Over the socket, a window that names no runsDirectories watches nothing (not the monitor's cwd/runs).
    hub.join(Conn(3), Settings(runs_directories=None))
    assert core.settings.runs_directories == (str(B),)
    hub.leave(two)
    assert core.settings.runs_directories == () and not hub.closed  # the grace: the core lives on


def test_over_stdio_the_one_window_settings_are_used_as_they_are_and_its_shutdown_ends_the_hub() -> None:
    cores: list[FakeCore] = []
    hub = Hub(shared=False, sidecar_factory=lambda s, emit: cores.append(FakeCore(s)) or cores[-1])  # type: ignore[func-returns-value]
    conn = Conn(1)
    settings = Settings(runs_directory="runs")
    hub.join(conn, settings)
    assert cores[0].settings == settings
    hub.leave(conn)
    assert hub.closed


async def test_a_window_that_stops_reading_is_dropped_not_buffered_without_end() -> None:
    ours, theirs = socket.socketpair()
    dropped: list[bool] = []
    _, writer = await asyncio.open_connection(sock=ours)
    sink = SocketWriter(writer, lambda: dropped.append(True), limit=1 << 20)
    chunk = b"x" * 65536
    for _ in range(200):  # 12.5 MiB to a peer that never reads
        sink.write(chunk)
        if dropped:
            break
    assert dropped and writer.transport.get_write_buffer_size() <= 1 << 20
    writer.close()
    theirs.close()


@pytest.fixture(autouse=True)
def _no_loop_needed() -> None:
    """The hub's emit needs no loop here: these tests call the router and settings parts directly."""
