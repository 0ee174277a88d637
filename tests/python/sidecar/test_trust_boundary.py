"""The attack suite: a runs folder written by someone else, against the real sidecar over stdio.

Each case is a real process (the victim) and a real file naming it. For each: the run is never `alive`, stop and
cleanup are refused, the victim was not signalled, no control file or folder was created, the refusal was
reported once (window/logMessage and a history event) however many ticks saw it, and the sidecar lived on
without losing a tick. Then: a diverging run (loss NaN) keeps every raw `crashGuard/sample` frame strict JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from sidecar_session import SERVER, Session, sidecar
from wire_frames import TEE, frames, strict  # TEE: the sidecar's stdout, copied byte for byte to a file

from crashguard.sidecar import protocol as p

MiB = 2**20
NOBODY = 65534
IS_ROOT = os.geteuid() == 0

# A real registered run that, once registered, never writes its status again (so a test can tamper with the
# file and the run does not repair it) and has no SIGTERM handler: a signal would end it.
REGISTERED = textwrap.dedent("""
    import os, sys, time
    from crashguard.runs import RunHook
    hook = RunHook(sys.argv[2], runs_dir=sys.argv[1])
    hook.start()
    if len(sys.argv) > 3:  # become another user, keeping the lock (root only)
        os.setresgid(int(sys.argv[3]), int(sys.argv[3]), int(sys.argv[3]))
        os.setresuid(int(sys.argv[3]), int(sys.argv[3]), int(sys.argv[3]))
    print("ready", flush=True)
    time.sleep(300)
""")
# A stand-in for the editor: the sidecar's parent, sharing its stdin/stdout (like the extension host).
EDITOR = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


@dataclass
class Case:
    name: str
    victim: subprocess.Popen | None  # None: the victim is not ours to own (pid 1, the editor)
    pid: int
    listed: bool  # False: the file itself is refused (never a run); True: listed, but never alive
    reason: str  # what the refusal report says
    report_path: str  # the refused path, relative to the runs folder's parent
    control_dirs: list[Path] = field(default_factory=list)  # must never receive a request


class Attacks:
    def __init__(self, tmp: Path, runs: Path) -> None:
        self.tmp, self.runs = tmp, runs
        self.cases: dict[str, Case] = {}
        self.procs: list[subprocess.Popen] = []

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    # -- victims ---------------------------------------------------------------------------------------------
    def sleeper(self) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        self.procs.append(proc)
        return proc

    def registered(self, runs: Path, name: str, as_user: int | None = None) -> subprocess.Popen:
        args = [sys.executable, "-c", REGISTERED, str(runs), name, *([str(as_user)] if as_user is not None else [])]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    # -- forged files ----------------------------------------------------------------------------------------
    def forge(self, name: str, pid: int, create_time: str, lock: bool = True, **extra: object) -> Path:
        """A status file written by hand; `create_time` is raw JSON text (NaN and Infinity included). With
        `lock`, a lock file is created too and its identity copied: all a file can do."""
        run_dir = self.runs / name
        run_dir.mkdir()
        fields = {"version": 2, "name": name, "pid": pid, "state": "running", "rank": 0, "world_size": 1,
                  "step": 5, "updated": time.time(), **extra}
        if lock:
            (run_dir / ".lock").touch(mode=0o600)
            st = (run_dir / ".lock").stat()
            fields.update(lock_dev=st.st_dev, lock_ino=st.st_ino, lock_fd=3)  # fd 3 of the victim is another file
        text = json.dumps(fields)[:-1] + f', "create_time": {create_time}}}'
        (run_dir / "status.json").write_text(text)
        (run_dir / "status.json").chmod(0o600)
        return run_dir

    def tamper(self, name: str, **changes: object) -> None:
        path = self.runs / name / "status.json"
        status = json.loads(path.read_text())
        status.update(changes)
        path.write_text(json.dumps(status))

    def add(self, name: str, victim: subprocess.Popen | None, pid: int, listed: bool, reason: str,
            report_path: str | None = None) -> None:
        self.cases[name] = Case(name, victim, pid, listed, reason,
                                report_path or f"runs/{name}/status.json")


def _ctime(pid: int) -> str:
    return repr(psutil.Process(pid).create_time())


def _build_file_attacks(a: Attacks) -> None:
    runs, tmp = a.runs, a.tmp
    for name, raw in (("nan-ctime", "NaN"), ("inf-ctime", "Infinity"), ("neg-inf-ctime", "-Infinity"),
                      ("overflow-ctime", "1e999")):
        victim = a.sleeper()
        a.forge(name, victim.pid, raw)
        a.add(name, victim, victim.pid, False, "not valid JSON")

    victim = a.sleeper()  # the real create time, copied from the process: a perfect file, and still no proof
    a.forge("copied-ctime", victim.pid, _ctime(victim.pid))
    a.add("copied-ctime", victim, victim.pid, True, f"process {victim.pid} does not hold .lock")

    victim = a.registered(runs, "writable-file")  # a genuine run, then its status made world-writable
    (runs / "writable-file" / "status.json").chmod(0o666)
    a.add("writable-file", victim, victim.pid, False, "writable by group or others")

    victim = a.registered(runs, "writable-folder")
    (runs / "writable-folder").chmod(0o777)
    a.add("writable-folder", victim, victim.pid, False, "writable by group or others", "runs/writable-folder")

    if IS_ROOT:
        victim = a.registered(runs, "theirs-file")
        os.chown(runs / "theirs-file" / "status.json", NOBODY, NOBODY)
        a.add("theirs-file", victim, victim.pid, False, f"owned by uid {NOBODY}")

        victim = a.registered(runs, "theirs-folder")
        os.chown(runs / "theirs-folder", NOBODY, NOBODY)
        a.add("theirs-folder", victim, victim.pid, False, f"owned by uid {NOBODY}", "runs/theirs-folder")

        # Registered (holds its lock, files ours) and then became another user: another user's process.
        victim = a.registered(runs, "other-user", as_user=NOBODY)
        a.add("other-user", victim, victim.pid, True, "belongs to another user")

    # A genuine registered run outside the runs folder, reached through a symlinked run folder.
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    victim = a.registered(elsewhere, "linked")
    (runs / "linked").symlink_to(elsewhere / "linked")
    a.add("linked", victim, victim.pid, False, "symlink", "runs/linked")
    a.cases["linked"].control_dirs.append(elsewhere / "linked" / "control")

    # A real folder whose status file is a symlink to a genuine run's, with the lock hard-linked (the very inode
    # the run holds): only the symlink check stands in the way.
    victim = a.registered(elsewhere, "linked-status")
    (runs / "linked-status").mkdir()
    (runs / "linked-status" / "status.json").symlink_to(elsewhere / "linked-status" / "status.json")
    os.link(elsewhere / "linked-status" / ".lock", runs / "linked-status" / ".lock")
    a.add("linked-status", victim, victim.pid, False, "symlink")
    a.cases["linked-status"].control_dirs.append(elsewhere / "linked-status" / "control")

    victim = a.registered(runs, "dotdot-rank")  # genuine, then its rank made a path
    a.tamper("dotdot-rank", rank="/../../../../outside", world_size=2)
    a.add("dotdot-rank", victim, victim.pid, False, "rank: expected an integer, got str")

    victim = a.registered(runs, "string-world")
    a.tamper("string-world", world_size="2")
    a.add("string-world", victim, victim.pid, False, "world_size: expected an integer, got str")

    victim = a.sleeper()  # 100 MB: a valid beginning, then padding
    (runs / "huge").mkdir()
    with (runs / "huge" / "status.json").open("w") as handle:
        handle.write(f'{{"name": "huge", "pid": {victim.pid}, "create_time": {_ctime(victim.pid)}, "pad": "')
        chunk = "x" * MiB
        for _ in range(100):
            handle.write(chunk)
        handle.write('"}')
    (runs / "huge" / "status.json").chmod(0o600)
    a.add("huge", victim, victim.pid, False, "over the 65536-byte limit")

    a.forge("init", 1, _ctime(1))  # pid 1, with its true create time and a lock file
    a.add("init", None, 1, True, "pid 1 is init: never touched")


def _dirs(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()}


def _request_files(case: Case, runs: Path) -> list[Path]:
    folders = [*case.control_dirs, *(runs / case.name).glob("control*")] if (runs / case.name).is_dir() else \
        list(case.control_dirs)
    return [f for d in folders if d.is_dir() and not d.is_symlink() for f in d.glob("*.json")]


def _sidecar_process(session: Session) -> psutil.Process:
    [server] = psutil.Process(session.pid).children()  # the session's pid is the editor stand-in
    return server


def _peak_rss(proc: psutil.Process) -> int:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def attacks(tmp_path: Path) -> Iterator[Attacks]:
    runs = tmp_path / "runs"
    runs.mkdir()
    a = Attacks(tmp_path, runs)
    try:
        yield a
    finally:
        a.close()


@pytest.mark.slow
async def test_attack_suite_nothing_is_alive_signalled_or_written_and_each_refusal_is_reported_once(
        attacks: Attacks) -> None:
    a, runs = attacks, attacks.runs
    genuine = a.registered(runs, "genuine")  # the control case: the sidecar does see a real run
    _build_file_attacks(a)
    settings = {"runsDirectory": str(runs), "sampleIntervalMs": 200}
    async with sidecar(settings, command=[sys.executable, "-c", EDITOR, *SERVER]) as s:
        server = _sidecar_process(s)
        editor = psutil.Process(s.pid)
        victim_editor = a.forge("the-editor", editor.pid, repr(editor.create_time()))
        a.add("the-editor", None, editor.pid, True, "is an ancestor of the sidecar (the editor")
        dirs_before = _dirs(a.tmp)

        samples = await s.wait_samples(8)  # every case seen by many ticks
        runs_now = {r["name"]: r for r in (await s.request(p.RUNS, {}))["runs"]}
        assert runs_now["genuine"]["alive"] and runs_now["genuine"]["pid"] == genuine.pid
        for case in a.cases.values():
            if case.listed:
                run = runs_now[case.name]
                assert (run["alive"], run["state"]) == (False, "crashed"), (case.name, run)
                assert run["exitCause"].startswith("not a Crash Guard run") and case.reason in run["exitCause"]
            else:
                assert case.name not in runs_now, (case.name, runs_now.get(case.name))

        names = list(a.cases)
        cleanup = await s.request(p.CLEANUP, {"runs": names, "timeoutMs": 500}, timeout=30)
        assert {r["run"] for r in cleanup["runs"]} == set(names)
        assert not any(r["ok"] for r in cleanup["runs"]), cleanup
        everyone = await s.request(p.CLEANUP, {"timeoutMs": 500}, timeout=30)
        assert [r["run"] for r in everyone["runs"]] == ["genuine"]  # the only live run asked
        for name in names:
            stop = await s.request(p.STOP_RUN, {"run": name, "timeoutMs": 300}, timeout=30)
            assert not stop["ok"] and not stop["signalled"], (name, stop)

        later = await s.wait_samples(3)  # the sidecar lived on, and no tick was lost
        seqs = [x["seq"] for x in s.of(p.SAMPLE)]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert later[-1]["seq"] > samples[-1]["seq"]
        assert server.is_running() and editor.is_running()
        logs = [m.message for m in s.client.log_messages]
        assert not [m for m in logs if "sampling failed" in m or "Traceback" in m], logs
        assert _peak_rss(server) < 150 * MiB, "the 100 MB status file was read into memory"

        events = [e for e in (await s.request(p.HISTORY, {}))["events"] if e["level"] == "refused"]
        for case in a.cases.values():
            path = str(a.tmp / case.report_path)
            reported = [e for e in events if e["message"].startswith(f"{path}: not acted on: ")]
            assert len(reported) == 1, (case.name, [e["message"] for e in events])
            assert case.reason in reported[0]["message"], (case.name, reported[0]["message"])
            assert reported[0]["kind"] == "run"
            logged = [m for m in logs if m.endswith(reported[0]["message"])]
            assert len(logged) == 1, (case.name, logged)

    for case in a.cases.values():  # the victims: none signalled, none stopped, nothing written for them
        if case.victim is not None:
            assert case.victim.poll() is None, f"{case.name}: the victim was signalled"
            assert psutil.Process(case.pid).status() != psutil.STATUS_STOPPED
        assert _request_files(case, runs) == [], f"{case.name}: a control request was written"
    assert psutil.pid_exists(1)
    assert _dirs(a.tmp) == dirs_before, "a directory was created (or removed) by the sidecar"
    assert not list(a.tmp.rglob("outside")) and not list(a.tmp.parent.glob("outside"))
    assert victim_editor.is_dir() and not (victim_editor / "control").exists()
    assert genuine.poll() is None


DIVERGING = textwrap.dedent("""
    import math, sys, time
    from crashguard.runs import RunHook
    hook = RunHook(sys.argv[2], runs_dir=sys.argv[1], write_interval=0.1)
    hook.start()
    for step in range(1, 100_000):
        loss = 1.0 / step if step < 5 else (math.nan, math.inf, -math.inf)[step % 3]
        hook.step_boundary(step=step, loss=loss)
        time.sleep(0.05)
""")


async def test_a_diverging_run_keeps_every_sample_frame_strict_json_and_the_gauge_live(
        tmp_path: Path, runs_dir: Path) -> None:
    raw_file = tmp_path / "stdout.raw"
    child = subprocess.Popen([sys.executable, "-c", DIVERGING, str(runs_dir), "diverging"])
    try:
        settings = {"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}
        async with sidecar(settings, command=[sys.executable, "-c", TEE, str(raw_file), *SERVER]) as s:
            def diverged(sample: dict) -> bool:
                return any(r["name"] == "diverging" and r["alive"] and r["step"] >= 8 for r in sample["runs"])

            await s.wait_for(p.SAMPLE, diverged, timeout=30)
            after = await s.wait_samples(6)
        body_of: Callable[[dict], dict] = lambda frame: frame.get("params") or {}  # noqa: E731
        samples = [body_of(f) for f in map(strict, frames(raw_file.read_bytes()))  # raises on NaN/Infinity
                   if isinstance(f, dict) and f.get("method") == p.SAMPLE]
    finally:
        child.kill()
        child.wait(timeout=10)
    assert len(samples) >= len(s.of(p.SAMPLE)) >= 7
    live = [r for x in samples for r in x["runs"] if r["name"] == "diverging" and r["alive"]]
    assert any(r["loss"] is None and r["step"] >= 5 for r in live), live[-3:]  # NaN/Infinity became null
    assert [x["seq"] for x in after] == list(range(after[0]["seq"], after[0]["seq"] + 6))  # the gauge kept going
    assert all(isinstance(x["ram"]["percent"], float) for x in after)
