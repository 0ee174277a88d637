"""One memory monitor per user per host (issue 22): several windows over the unix socket share one real monitor, one
sampler and one registry (the union of their runs folders); alerts are routed (a warning to one window, a crash to
the window that holds the run, once per run); a second user is refused by its peer credentials; N starters at
once make one monitor; it exits when idle and comes back after kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared_monitor import Host, private_host, wait_until, window

from crashguard.sidecar import protocol as p
from crashguard.sidecar.endpoint import build_id

pytestmark = pytest.mark.slow  # each test starts a real monitor process and waits on real samples

# A rank of a torchrun-style run: registers with RunHook as rank argv[3] of argv[4] and steps until killed.
RANK = textwrap.dedent("""
    import sys, time
    from crashguard.runs import RunHook
    hook = RunHook(sys.argv[1], runs_dir=sys.argv[2], rank=int(sys.argv[3]), world_size=int(sys.argv[4]),
                   write_interval=0.1)
    hook.start()
    step = 0
    while True:
        step += 1
        time.sleep(0.1)
        hook.step_boundary(step=step)
""")


@pytest.fixture
def host() -> Iterator[Host]:
    with private_host(grace=30.0) as h:
        yield h


@pytest.fixture
def folders(tmp_path: Path) -> list[Path]:
    out = []
    for name in ("a", "b", "c"):
        path = tmp_path / name / "runs"
        path.mkdir(parents=True)
        out.append(path)
    return out


@pytest.fixture
def ranks() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def start_rank(started: list[subprocess.Popen[bytes]], runs: Path, name: str, rank: int, world: int
               ) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", RANK, name, str(runs), str(rank), str(world)])
    started.append(proc)
    status = runs / name / ("status.json" if rank == 0 else f"status.rank{rank}.json")
    wait_until(status.exists, 30, f"{name} rank {rank} to register")
    return proc


def settings(runs: Path, **more: object) -> dict[str, object]:
    return {"runsDirectories": [str(runs)], "sampleIntervalMs": 200, **more}


async def test_three_windows_share_one_monitor_one_sampler_and_the_union_of_their_folders(
        host: Host, folders: list[Path], ranks: list[subprocess.Popen[bytes]]) -> None:
    a, b, c = folders
    start_rank(ranks, b, "in-b", 0, 1)
    found = host.ensure()
    assert found["started"] and found["socket"].endswith(f"monitor-{found['build']}.sock")
    again = host.ensure()
    assert not again["started"] and again["pid"] == found["pid"]
    async with window(found["socket"], settings(a)) as wa, window(found["socket"], settings(b)) as wb, \
            window(found["socket"], settings(c)) as wc:
        assert wa.initialize_result.capabilities.experimental["crashGuard"]["protocolVersion"] == 2
        samples = [await w.wait_samples(4) for w in (wa, wb, wc)]
        # One sampler: every window gets the same samples (the same sequence numbers), not one stream each.
        seqs = [{s["seq"] for s in got} for got in samples]
        later = max(min(s) for s in seqs)
        await asyncio.gather(*(w.wait_for(p.SAMPLE, lambda s, n=later + 2: s["seq"] >= n) for w in (wa, wb, wc)))
        common = set.intersection(*({s["seq"] for s in w.of(p.SAMPLE)} for w in (wa, wb, wc)))
        assert len(common) >= 3
        # The registry is the union: a's window sees b's run in the samples (the machine's runs) ...
        assert any(r["name"] == "in-b" for r in wa.of(p.SAMPLE)[-1]["runs"])
        # ... but crashGuard/runs (what a window offers to resume) lists only its own folders' runs.
        assert [r["name"] for r in (await wb.request(p.RUNS, {}))["runs"]] == ["in-b"]
        assert (await wa.request(p.RUNS, {}))["runs"] == []
        # Host-wide settings: the most recent window's update holds for every window.
        await wc.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 97, "ramCriticalPercent": 99}})
        for w in (wa, wb, wc):
            await w.wait_for(p.SAMPLE, lambda s: s["thresholds"]["ramWarningPercent"] == 97)
        assert len(host.monitors()) == 1
        # A window that leaves takes its folder out of the union.
        await wb.close()
        await wa.wait_for(p.SAMPLE, lambda s: not any(r["name"] == "in-b" for r in s["runs"]))
    assert [m.pid for m in host.monitors()] == [found["pid"]]  # the grace: still there after the last one left


async def test_a_warning_goes_to_one_window_a_crash_to_its_folder_once_an_action_to_every_window(
        host: Host, folders: list[Path], ranks: list[subprocess.Popen[bytes]]) -> None:
    a, b, _ = folders
    found = host.ensure()
    async with window(found["socket"], settings(a)) as wa, window(found["socket"], settings(b)) as wb:
        await wa.focus(True)
        await wb.focus(False)
        # A warning (RAM above 1 %): the focused window only.
        await wb.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 1, "ramCriticalPercent": 100}})
        await wa.wait_for(p.WARNING, lambda w: w["resource"] == "RAM" and w["level"] == "warning")
        await wb.wait_samples(3)
        assert [w for w in wb.of(p.WARNING) if w["level"] != "normal"] == []
        # Back to normal: every window (it shows nothing; each window re-arms).
        await wa.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 100}})
        for w in (wa, wb):
            await w.wait_for(p.WARNING, lambda x: x["resource"] == "RAM" and x["level"] == "normal")
        # Focus moves to b (a says it lost it): the next warning goes to b alone.
        await wa.focus(False)
        await wb.focus(True)
        told_a = len(wa.of(p.WARNING))
        await wa.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 1}})
        await wb.wait_for(p.WARNING, lambda w: w["resource"] == "RAM" and w["level"] == "warning")
        await wa.wait_samples(3)
        assert len(wa.of(p.WARNING)) == told_a
        # Nobody focused: the most recently focused (b) still gets it.
        await wb.focus(False)
        await wa.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 100}})
        await wb.wait_for(p.WARNING, lambda x: x["level"] == "normal" and x["time"] > 0)
        await wa.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 1}})
        await wb.wait_samples(3)
        assert sum(1 for w in wb.of(p.WARNING) if w["level"] == "warning") == 2
        assert sum(1 for w in wa.of(p.WARNING) if w["level"] == "warning") == 1

        # A two-rank run in b's folder dies: one "crashed" for the run, to b only.
        r0 = start_rank(ranks, b, "ddp", 0, 2)
        r1 = start_rank(ranks, b, "ddp", 1, 2)
        await wb.wait_for(p.RUN_EVENT, lambda e: e["event"] == "started" and e["run"]["rank"] == 1)
        r0.kill()
        r1.kill()
        await wb.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed")
        await wb.wait_samples(5)
        crashed = [e for e in wb.of(p.RUN_EVENT) if e["event"] == "crashed"]
        assert len(crashed) == 1 and crashed[0]["run"]["name"] == "ddp"
        assert wa.of(p.RUN_EVENT) == []  # a's folder holds no run
        assert {r["name"] for r in (await wb.request(p.RUNS, {}))["runs"]} == {"ddp"}

        # The ladder acts once on the host and every window hears of it once.
        await wa.request(p.UPDATE_SETTINGS, {"settings": {"autoCleanup": True}})
        for w in (wa, wb):
            await w.wait_for(p.ACTION, lambda x: x["action"] == "cleanup", timeout=30)
        await wa.wait_samples(5)
        assert len(wa.of(p.ACTION)) == len(wb.of(p.ACTION)) == 1


async def test_stop_monitor_from_the_last_window_ends_it_at_once_and_idle_exit_after_the_grace(
        folders: list[Path]) -> None:
    with private_host(grace=1.5) as host:
        found = host.ensure()
        [monitor] = host.monitors()
        # A window that reloads within the grace finds the same monitor.
        async with window(found["socket"], settings(folders[0])) as w:
            await w.wait_samples(1)
        await asyncio.sleep(0.5)
        assert host.ensure()["pid"] == found["pid"]
        # Then nobody: gone after the grace, its socket with it.
        monitor.wait(timeout=15)
        assert not Path(found["socket"]).exists()
        # Stop Memory Monitor in the last window: gone at once (well within a grace of 30 s).
        host.grace = 30.0
        found = host.ensure()
        [monitor] = host.monitors()
        async with window(found["socket"], settings(folders[0])) as w:
            w.client.protocol.notify(p.STOP_MONITOR, {})
            await w.wait_samples(1)
        monitor.wait(timeout=10)
        assert "the last window stopped the memory monitor" in host.log_text()


async def test_restart_memory_monitor_replaces_it_for_every_window(host: Host, folders: list[Path]) -> None:
    """Restart Memory Monitor ({replace: true}) in one window: the monitor exits although another window is
    connected, and a starter that comes right after gets a new monitor, never the one on its way out."""
    found = host.ensure()
    async with window(found["socket"], settings(folders[0])) as wa, \
            window(found["socket"], settings(folders[1])) as wb:
        await wb.wait_samples(1)
        wa.client.protocol.notify(p.STOP_MONITOR, {"replace": True})
        await wa.wait_samples(1)
    # wa has left (the window's next step is --ensure); wb, still connected, is dropped with the old monitor.
    again = host.ensure()
    assert again["pid"] != found["pid"] and again["started"]
    assert [m.pid for m in host.monitors()] == [again["pid"]]
    assert "a window restarts the memory monitor: exiting" in host.log_text()
    async with window(again["socket"], settings(folders[1])) as w:
        await w.wait_samples(1)


async def test_kill_9_of_the_monitor_every_window_reconnects_to_one_new_monitor(
        host: Host, folders: list[Path], ranks: list[subprocess.Popen[bytes]]) -> None:
    start_rank(ranks, folders[1], "in-second", 0, 1)
    found = host.ensure()
    async with window(found["socket"], settings(folders[0])) as wa, \
            window(found["socket"], settings(folders[1])) as wb:
        # The last window's folder is watched from its initialize on: its first answers have its run.
        assert [r["name"] for r in (await wb.request(p.RUNS, {}))["runs"]] == ["in-second"]
        await wa.wait_samples(1)
        os.kill(found["pid"], signal.SIGKILL)
        for w in (wa, wb):
            await asyncio.wait_for(asyncio.shield(w.connection), 10)  # type: ignore[arg-type]
    # Both windows notice at once and ensure again: one new monitor, the dead one's socket replaced.
    starters = [host.ensure_process() for _ in range(2)]
    outs = [s.communicate(timeout=60) for s in starters]
    pids = {__import__("json").loads(out)["pid"] for out, _ in outs}
    assert len(pids) == 1 and found["pid"] not in pids
    assert [m.pid for m in host.monitors()] == list(pids)
    host.pids |= pids
    async with window(found["socket"], settings(folders[0])) as w:
        await w.wait_samples(1)


def test_n_starters_at_once_make_one_monitor(host: Host) -> None:
    starters = [host.ensure_process() for _ in range(6)]
    outs = [s.communicate(timeout=90) for s in starters]
    assert all(s.returncode == 0 for s in starters), [err for _, err in outs]
    found = [__import__("json").loads(out) for out, _ in outs]
    pids = {f["pid"] for f in found}
    host.pids |= pids
    assert len(pids) == 1
    assert sum(f["started"] for f in found) == 1  # exactly one starter started it; the others found it
    assert [m.pid for m in host.monitors()] == list(pids)


# Another user's client: connects to argv[1], sends an initialize frame and says what came back.
OTHER_USER_CLIENT = textwrap.dedent("""
    import json, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sys.argv[1])
    except PermissionError:
        print("no access"); sys.exit()
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"processId": None, "capabilities": {}}}).encode()
    try:
        s.sendall(b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
        data = s.recv(65536)
    except OSError as exc:
        print("closed", type(exc).__name__); sys.exit()
    print("answered" if data else "closed")
""")
NOBODY = 65534


def _python_for(uid: int) -> str | None:
    """An interpreter that user `uid` may run (the venv's may live under a folder only root can enter)."""
    for python in ("/usr/bin/python3", sys.executable):
        done = subprocess.run([python, "-I", "-c", "pass"], user=uid, group=uid, capture_output=True, check=False)
        if done.returncode == 0:
            return python
    return None


def _as(uid: int | None, python: str, socket_path: str) -> str:
    who = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
    done = subprocess.run([python, "-I", "-c", OTHER_USER_CLIENT, socket_path], capture_output=True, text=True,
                          timeout=30, check=False, **who)  # type: ignore[call-overload]
    return done.stdout.strip() or done.stderr.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="running a client as another user (nobody) needs root")
def test_another_user_is_refused_by_the_folder_and_by_its_peer_credentials(host: Host) -> None:
    python = _python_for(NOBODY)
    if python is None:
        pytest.skip("no interpreter that the user nobody may run")
    found = host.ensure()
    # As created: another user cannot even reach the socket (the folder is 0700).
    assert _as(NOBODY, python, found["socket"]) == "no access"
    # With the folders and the socket opened to everyone, the socket is reachable, and the monitor still refuses
    # the connection: its peer credentials carry another uid. It reads nothing and answers nothing.
    for path, mode in ((host.xdg, 0o711), (host.folder, 0o711), (Path(found["socket"]), 0o666)):
        path.chmod(mode)
    assert _as(NOBODY, python, found["socket"]).startswith("closed")
    assert f"refused a connection from uid {NOBODY}" in host.log_text()
    assert _as(None, python, found["socket"]) == "answered"  # the same client as this user is served


def test_a_socket_that_is_not_a_socket_of_this_user_is_never_used(host: Host) -> None:
    host.folder.mkdir(mode=0o700)
    planted = host.folder / "planted"
    planted.write_text("")
    sock = host.folder / f"monitor-{build_id()}.sock"
    sock.symlink_to(planted)  # not a socket: a symlink to a file
    done = host.ensure_process()
    _, err = done.communicate(timeout=60)
    assert done.returncode == 5 and "is not a socket" in err
    assert host.monitors() == []
    sock.unlink()
    # The lock file through a symlink (to a file of the user's choosing): never opened, nothing starts.
    lock = host.folder / f"monitor-{build_id()}.lock"
    lock.symlink_to(planted)
    done = host.ensure_process()
    _, err = done.communicate(timeout=60)
    assert done.returncode == 5 and str(lock) in err
    assert host.monitors() == [] and planted.read_text() == ""
    lock.unlink()
    # A lock file of garbage (or huge) is no monitor's record: overwritten by the monitor that takes the lock.
    lock.write_bytes(b"\xff" * 100_000)
    found = host.ensure()
    assert isinstance(found["pid"], int) and found["started"]
