"""The attack suite, round 2 (issue 21): a runs folder written by someone else, against the real sidecar over stdio.

Each test plants files next to real processes and checks what the sidecar did, frame by frame where the wire is
the point: one file cannot switch the guard off (a fault stays with its run), no int beyond what JavaScript holds
reaches the wire, a crash is offered only with a proof (witnessed by the monitor, or sealed by the run's
supervisor), a hard link or a thread id is no registration, 10,000 planted folders raise 10,000 of nothing, and a
lock kept by a stray child is named. (The trainer side's attacks are in tests/python/runs/test_trainer_side_files.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sidecar_session import SERVER, sidecar
from trainer_helpers import StartTrainer, wait_registered
from wire_frames import MAX_FRAME_BYTES, SAFE_INT, TEE, read_frames, samples_of

from crashguard.runs.lock import RunLocked
from crashguard.runs.status import RunState, RunStatus
from crashguard.sidecar import protocol as p

# A real registered run that never writes its status again (a test may tamper with it) and has no SIGTERM handler:
# a signal would end it. With "thread" it also starts a thread and prints that thread's id.
REGISTERED = textwrap.dedent("""
    import sys, threading, time
    from crashguard.runs import RunHook
    hook = RunHook(sys.argv[2], runs_dir=sys.argv[1])
    hook.start()
    if "thread" in sys.argv[3:]:
        tid = []
        threading.Thread(target=lambda: (tid.append(threading.get_native_id()), time.sleep(300)),
                         daemon=True).start()
        while not tid:
            time.sleep(0.01)
        print(tid[0], flush=True)
    print("ready", flush=True)
    time.sleep(300)
""")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _registered(procs: list[subprocess.Popen[Any]], runs: Path, name: str, *extra: str) -> tuple[subprocess.Popen[Any],
                                                                                                   list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", REGISTERED, str(runs), name, *extra], stdout=subprocess.PIPE,
                            text=True)
    procs.append(proc)
    assert proc.stdout is not None
    lines = []
    while (line := proc.stdout.readline().strip()) != "ready":
        assert line, f"{name} ended before registering"
        lines.append(line)
    return proc, lines


def _plant(runs: Path, name: str, text: str | bytes, lock: bool = False) -> Path:
    """A run folder whose status.json is `text`, exactly (0600, ours: only its content is hostile)."""
    run_dir = runs / name
    run_dir.mkdir()
    path = run_dir / "status.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(0o600)
    if lock:
        (run_dir / ".lock").touch(mode=0o600)
    return run_dir


def _dead_process() -> tuple[int, float]:
    """The pid and create time of a process that has ended (what a crashed run's status names)."""
    proc = subprocess.Popen(["sleep", "60"])
    create_time = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait()
    return proc.pid, create_time


def _status(name: str, pid: int, create_time: float, **fields: Any) -> dict[str, Any]:
    return {"version": 2, "name": name, "pid": pid, "create_time": create_time, "state": "running", "rank": 0,
            "world_size": 1, "step": 5, "started": time.time() - 60, "updated": time.time(), **fields}


def _refusals(history: dict[str, Any]) -> list[str]:
    return [e["message"] for e in history["events"] if e["level"] == "refused"]


def _consecutive(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crashguard", *args], capture_output=True, text=True, timeout=120)


# -- 1. one file switches the whole guard off ---------------------------------------------------------------------
async def test_a_fault_in_one_status_file_stays_with_that_run(runs_dir: Path, start_trainer: StartTrainer) -> None:
    legit = start_trainer("legit", mb=10)
    pid, ct = _dead_process()
    base = json.dumps(_status("x", pid, ct))[:-1]
    digits = "1" + "0" * 400  # float() of it raises OverflowError; far beyond any int a reader holds
    planted = {
        "overflow-updated": base.replace('"x"', '"overflow-updated"') + f', "updated": {digits}}}',
        "overflow-ctime": json.dumps(_status("overflow-ctime", pid, 1.0))[:-1].replace('"create_time": 1.0',
                                                                                       f'"create_time": {digits}')
        + "}",
        "overflow-loss": base.replace('"x"', '"overflow-loss"') + f', "loss": -{digits}}}',
        "many-digits": base.replace('"x"', '"many-digits"') + f', "epoch": {"9" * 5000}}}',
        "deep": base.replace('"x"', '"deep"') + ', "resume_command": ' + "[" * 20000 + "]" * 20000 + "}",
        "not-utf8": b'{"name": "not-utf8", "pid": 1, "create_time": 1.0, "last_event": "\xff\xfe"}',
    }
    for name, text in planted.items():
        _plant(runs_dir, name, text)
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}) as s:
        samples = await s.wait_samples(6)
        assert _consecutive([x["seq"] for x in s.of(p.SAMPLE)])
        assert [r["name"] for r in samples[-1]["runs"] if r["alive"]] == ["legit"]
        runs = (await s.request(p.RUNS, {}))["runs"]
        assert [r["name"] for r in runs] == ["legit"], runs  # every planted file refused, none listed
        refused = _refusals(await s.request(p.HISTORY, {}))
        for name in planted:
            mine = [m for m in refused if m.startswith(f"{runs_dir / name / 'status.json'}: not acted on: ")]
            assert len(mine) == 1, (name, refused)
        logs = [m.message for m in s.client.log_messages]
        assert not [m for m in logs if "sampling failed" in m or "Traceback" in m], logs
        # `crashguard cleanup` on the same folder: the live run is asked, the planted files cost nothing.
        cleanup = _cli("cleanup", "--runs-dir", str(runs_dir), "--json", "--timeout", "10")
        assert cleanup.returncode == 0, cleanup.stderr
        assert [(r["run"], r["ok"]) for r in json.loads(cleanup.stdout)["runs"]] == [("legit", True)]
        stop = await s.request(p.STOP_RUN, {"run": "legit", "timeoutMs": 10_000}, timeout=30)
        assert stop["ok"] and stop["state"] == "stopped" and not stop["signalled"], stop
        await s.wait_samples(2)
        assert _consecutive([x["seq"] for x in s.of(p.SAMPLE)])
    assert legit.wait(timeout=10) == 0


# -- 2. numbers JavaScript cannot hold ----------------------------------------------------------------------------
async def test_no_int_beyond_what_javascript_holds_reaches_the_wire(
        tmp_path: Path, runs_dir: Path, procs: list[subprocess.Popen[Any]]) -> None:
    raw = tmp_path / "stdout.raw"
    victim, _ = _registered(procs, runs_dir, "big-step")  # a genuine run, then its status made unreadable to JS
    path = runs_dir / "big-step" / "status.json"
    status = json.loads(path.read_text())
    status["step"] = 2**60
    path.write_text(json.dumps(status))
    _registered(procs, runs_dir, "fine")
    settings = {"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}
    async with sidecar(settings, command=[sys.executable, "-c", TEE, str(raw), *SERVER]) as s:
        await s.wait_samples(4)
        runs = {r["name"]: r for r in (await s.request(p.RUNS, {}))["runs"]}
        assert set(runs) == {"fine"} and runs["fine"]["alive"]  # the bad file is its run's problem alone
        [reason] = [m for m in _refusals(await s.request(p.HISTORY, {})) if "big-step" in m]
        assert "step: expected 0..9007199254740991" in reason, reason
        stop = await s.request(p.STOP_RUN, {"run": "big-step", "timeoutMs": 300})
        assert not stop["ok"] and not stop["signalled"]
    parsed = read_frames(raw)  # every frame: strict JSON, ints within 2**53 - 1, samples within 64 KiB
    assert len(samples_of(parsed)) >= 4
    assert victim.poll() is None


# -- 3. Resume runs what a file says ------------------------------------------------------------------------------
async def test_a_planted_crash_has_no_proof_and_a_witnessed_one_survives_a_monitor_restart(
        runs_dir: Path, start_trainer: StartTrainer) -> None:
    pid, ct = _dead_process()
    shell = {"argv": ["/bin/sh", "-c", "touch /tmp/crashguard-pwned"], "cwd": "/"}
    future = time.time() + 86_400
    _plant(runs_dir, "planted-future", json.dumps(_status("planted-future", pid, ct, updated=future,
                                                          resume_command=shell, exit_cause="attacker's text")))
    _plant(runs_dir, "planted-crashed", json.dumps(_status("planted-crashed", pid, ct, state="crashed",
                                                           resume_command=shell, crash_seal="v1:" + "0" * 64)))
    _plant(runs_dir, "planted-dead", json.dumps(_status("planted-dead", pid, ct, resume_command=shell)))
    settings = {"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}
    async with sidecar(settings) as s:
        await s.wait_samples(2)
        child = start_trainer("victim", mb=10)
        await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "started")
        os.kill(child.pid, signal.SIGKILL)
        crashed = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed")
        assert crashed["run"]["name"] == "victim" and crashed["run"]["crashProof"] == "witnessed"
        runs = {r["name"]: r for r in (await s.request(p.RUNS, {}))["runs"]}
        assert runs["victim"]["crashProof"] == "witnessed"
        for name in ("planted-future", "planted-crashed", "planted-dead"):
            assert (runs[name]["state"], runs[name]["crashProof"]) == ("crashed", None), runs[name]
    async with sidecar(settings) as s:  # a new monitor: it still knows what it witnessed, and nothing else
        runs = {r["name"]: r for r in (await s.request(p.RUNS, {}))["runs"]}
        assert runs["victim"]["crashProof"] == "witnessed"
        assert [n for n, r in runs.items() if r["crashProof"]] == ["victim"]
    assert not Path("/tmp/crashguard-pwned").exists()


WATCHED = textwrap.dedent("""
    import sys, time
    from crashguard.runs import RunHook
    from crashguard.runs.watchdog import start_watchdog
    hook = RunHook(sys.argv[2], runs_dir=sys.argv[1])
    hook.status.resume_command = {"argv": [sys.executable, "train.py", "--resume"], "cwd": sys.argv[1]}
    hook.start()
    start_watchdog(hook.run_dir / "status.json", hook.status.pid, hook.status.create_time)
    print("ready", flush=True)
    time.sleep(300)
""")


async def test_a_crash_sealed_by_its_watchdog_is_proven_and_a_copy_or_a_stale_seal_is_not(
        tmp_path: Path, runs_dir: Path, procs: list[subprocess.Popen[Any]]) -> None:
    from crashguard.runs.crash_seal import seal, seal_key
    from crashguard.runs.witness import MAX_CRASH_AGE_SECONDS

    child = subprocess.Popen([sys.executable, "-c", WATCHED, str(runs_dir), "sealed"], stdout=subprocess.PIPE,
                             text=True)
    procs.append(child)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    os.kill(child.pid, signal.SIGKILL)  # not reaped yet: the watchdog reads the signal from the zombie
    status_file = runs_dir / "sealed" / "status.json"
    deadline = time.monotonic() + 30
    while json.loads(status_file.read_text())["state"] != "crashed":
        assert time.monotonic() < deadline, "the watchdog did not record the crash"
        time.sleep(0.1)
    child.wait()
    sealed = json.loads(status_file.read_text())
    assert sealed["crash_seal"].startswith("v1:")
    # The same record in another folder (a copy), and records sealed with the right key but a time in the future or
    # older than the age cap: none is news.
    other = tmp_path / "other-runs"
    other.mkdir()
    _plant(other, "sealed", json.dumps(sealed))
    key = seal_key(create=False)
    assert key is not None
    for name, updated in (("future", time.time() + 3600), ("stale", time.time() - MAX_CRASH_AGE_SECONDS - 60)):
        record = {**sealed, "name": name, "updated": updated}
        record["crash_seal"] = seal((runs_dir / name).resolve(), record, key)
        _plant(runs_dir, name, json.dumps(record))
    settings = {"runsDirectories": [str(runs_dir), str(other)], "sampleIntervalMs": 200}
    async with sidecar(settings) as s:
        runs = {(Path(r["dir"]).parent.name, r["name"]): r for r in (await s.request(p.RUNS, {}))["runs"]}
    assert runs[("runs", "sealed")]["crashProof"] == "supervisor"
    assert runs[("runs", "sealed")]["exitCause"] == "killed by signal 9 (SIGKILL)"
    assert runs[("other-runs", "sealed")]["crashProof"] is None
    assert runs[("runs", "future")]["crashProof"] is None and runs[("runs", "stale")]["crashProof"] is None
    assert RunStatus.from_dict(sealed) is not None


# -- 4. a hard link to a lock someone else holds ------------------------------------------------------------------
async def test_a_hard_linked_lock_held_by_an_unregistered_process_proves_nothing(
        tmp_path: Path, runs_dir: Path, procs: list[subprocess.Popen[Any]]) -> None:
    held = tmp_path / "some-file-it-has-open"
    held.write_text("")
    held.chmod(0o600)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]); print('ready', "
                               "flush=True); time.sleep(300)", str(held)], stdout=subprocess.PIPE, text=True)
    procs.append(holder)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    run_dir = _plant(runs_dir, "linked-lock", "{}")
    os.link(held, run_dir / ".lock")
    st = held.stat()
    ctime = psutil.Process(holder.pid).create_time()
    (run_dir / "status.json").write_text(json.dumps(_status("linked-lock", holder.pid, ctime, lock_dev=st.st_dev,
                                                            lock_ino=st.st_ino)))
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}) as s:
        await s.wait_samples(3)
        [run] = (await s.request(p.RUNS, {}))["runs"]
        assert not run["alive"] and "2 links" in run["exitCause"], run
        stop = await s.request(p.STOP_RUN, {"run": "linked-lock", "timeoutMs": 300}, timeout=30)
        assert not stop["ok"] and not stop["signalled"], stop
    assert holder.poll() is None, "the process holding the hard-linked file was signalled"
    assert not (run_dir / "control").exists()


# -- 5. a thread id ------------------------------------------------------------------------------------------------
async def test_a_thread_id_is_not_a_process_and_its_process_is_never_signalled(
        runs_dir: Path, procs: list[subprocess.Popen[Any]]) -> None:
    proc, [tid_text] = _registered(procs, runs_dir, "threaded", "thread")
    tid = int(tid_text)
    assert tid != proc.pid and psutil.Process(tid).create_time()  # a thread's id names a /proc entry too
    path = runs_dir / "threaded" / "status.json"
    status = json.loads(path.read_text())
    status.update(pid=tid, create_time=psutil.Process(tid).create_time())  # its own run folder and lock
    path.write_text(json.dumps(status))
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}) as s:
        await s.wait_samples(3)
        [run] = (await s.request(p.RUNS, {}))["runs"]
        assert not run["alive"] and f"is a thread of process {proc.pid}" in run["exitCause"], run
        stop = await s.request(p.STOP_RUN, {"run": "threaded", "timeoutMs": 300}, timeout=30)
        assert not stop["ok"] and not stop["signalled"], stop
    assert proc.poll() is None, "the thread's process was signalled"


# -- 7. flooding ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_ten_thousand_planted_folders_raise_ten_thousand_of_nothing(
        tmp_path: Path, runs_dir: Path, start_trainer: StartTrainer) -> None:
    raw = tmp_path / "stdout.raw"
    legit = start_trainer("legit", mb=10)
    settings = {"runsDirectory": str(runs_dir), "sampleIntervalMs": 250}
    async with sidecar(settings, command=[sys.executable, "-c", TEE, str(raw), *SERVER]) as s:
        await s.wait_samples(2)  # then the folder fills while the monitor watches
        pid, ct = _dead_process()
        fat = "x" * 8000  # ~40 KB a status: 300 of them were 17 MB a second on the wire
        for i in range(10_000):
            name = f"planted-{i:05d}"
            if i % 2:
                fields = _status(name, pid, ct, world_size="2")  # refused
            else:
                fields = _status(name, pid, ct, state="finished" if i % 4 else "crashed",
                                 updated=time.time() - i, resume_command={"argv": ["/bin/sh"], "cwd": "/"})
                if i < 600:
                    fields.update(last_event=fat, exit_cause=fat, config="/" + fat, checkpoint="/" + fat)
            _plant(runs_dir, name, json.dumps(fields))
        # Every folder read (a few samples: ~50 ms of reading each), every listed run counted.
        await s.wait_for(p.SAMPLE, lambda x: x["runsOmitted"] + len(x["runs"]) == 5001, timeout=120)
        later = await s.wait_samples(6, timeout=60)
        assert later[-1]["runs"][0]["name"] == "legit" and later[-1]["runs"][0]["alive"]
        assert later[-1]["runsOmitted"] + len(later[-1]["runs"]) == 5001
        runs = await s.request(p.RUNS, {})
        assert runs["runsOmitted"] > 4000
        stop = await s.request(p.STOP_RUN, {"run": "legit", "timeoutMs": 10_000}, timeout=30)
        assert stop["ok"] and stop["state"] == "stopped", stop  # the legit run beside them stays controllable
        history = await s.request(p.HISTORY, {})
        logs = [m.message for m in s.client.log_messages]
        events = s.of(p.RUN_EVENT)
    assert legit.wait(timeout=10) == 0
    assert len(events) <= 41, f"{len(events)} run events"  # at most 20 a minute for runs never seen alive
    assert len([m for m in logs if "not acted on" in m]) <= 100
    assert len(_refusals(history)) <= 100
    assert any("more files or folders refused" in m for m in logs)
    parsed = read_frames(raw)
    sizes = [len(json.dumps(x)) for x in samples_of(parsed)]
    assert sizes and max(sizes) <= MAX_FRAME_BYTES
    assert _consecutive([x["seq"] for x in samples_of(parsed)])


# -- 12. a lock kept by a stray child ------------------------------------------------------------------------------
FORKING = textwrap.dedent("""
    import ctypes, os, sys, time
    from crashguard.runs import RunHook
    hook = RunHook(sys.argv[2], runs_dir=sys.argv[1])
    hook.start()
    child = ctypes.CDLL(None).fork()  # a C-level fork: no Python at-fork handler runs, the child keeps the lock
    if child == 0:
        time.sleep(300)
        os._exit(0)
    print(child, flush=True)
    time.sleep(300)
""")


async def test_a_lock_kept_by_a_stray_child_is_named(runs_dir: Path, procs: list[subprocess.Popen[Any]]) -> None:
    settings = {"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}
    async with sidecar(settings) as s:
        await s.wait_samples(2)
        parent = subprocess.Popen([sys.executable, "-c", FORKING, str(runs_dir), "forked"], stdout=subprocess.PIPE,
                                  text=True)
        procs.append(parent)
        assert parent.stdout is not None
        stray = int(parent.stdout.readline())
        try:
            wait_registered(runs_dir, "forked", parent.pid)
            await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "started")
            os.kill(parent.pid, signal.SIGKILL)
            await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed")
            [run] = (await s.request(p.RUNS, {}))["runs"]
            assert run["crashProof"] == "witnessed"
            assert run["lockHolder"]["pid"] == stray and run["lockHolder"]["command"], run["lockHolder"]
            from crashguard.runs import RunHook
            with pytest.raises(RunLocked) as locked:
                RunHook("forked", runs_dir=runs_dir).start()
            assert [h.pid for h in locked.value.holders] == [stray]
            assert f"held by pid {stray} (" in str(locked.value)
            # Ending it takes the same proof as a run: a process that does not hold the lock is not signalled.
            bystander = subprocess.Popen(["sleep", "60"])
            procs.append(bystander)
            refused = await s.request("crashGuard/endLockHolder", {"dir": run["dir"], "pid": bystander.pid})
            assert not refused["ok"] and not refused["signalled"] and "does not hold .lock" in refused["message"]
            assert bystander.poll() is None
            ended = await s.request("crashGuard/endLockHolder", {"dir": run["dir"], "pid": stray}, timeout=30)
            assert ended["ok"] and ended["signalled"], ended
            hook = RunHook("forked", runs_dir=runs_dir)
            hook.start()  # the resume can take the lock now
            hook.finish(RunState.FINISHED)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stray, signal.SIGKILL)


def test_sample_caps_are_what_the_wire_checks() -> None:
    assert (p.MAX_FRAME_BYTES, p.SAFE_INT) == (MAX_FRAME_BYTES, SAFE_INT)
