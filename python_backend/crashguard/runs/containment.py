"""Containment: the trainer in a memory cgroup of its own, with a hard limit (`max`) and a high mark below it.

Where the kernel's OOM killer acts at the group's hard limit, it can only pick among the group's processes: the
trainer and its workers, never the editor. Below it, the high mark gives the trainer room to react first
(guard/high_mark.py). Which mechanism, in this order:

1. a transient systemd user scope: `systemd-run --user --scope -p MemoryMax= -p MemoryHigh= -- <trainer>` (a
   desktop with cgroup v2 and a user systemd; the memory controller must be delegated to the user manager, as
   current distributions do). The scope's process *is* the trainer (systemd-run execs it), so the pid the
   supervisor waits on is the trainer's.
2. a delegated cgroup v2 group: this process's group is writable and enables the memory controller for its
   children (`cgroup.subtree_control`): a child group `crashguard-<run>-<pid>` with `memory.max`/`memory.high`.
3. the cgroup v1 memory controller where this process's group is writable (root, many containers): a child group
   with `memory.limit_in_bytes`, and `memory.soft_limit_in_bytes` as the high mark (v1 has no throttle there: the
   trainer enforces it itself; the kernel reclaims over-soft-limit groups first under global pressure).
4. none: one line saying why each mechanism is unavailable; the trainer still volunteers (oom_score_adj).

A group we create is ours only: it is made with the run's limits before the trainer starts, the trainer is put in
it by the forked child itself before it executes (so every page it ever allocates is charged there), and it is
removed when the trainer has ended; leftovers of the run in it (a DataLoader worker outliving a killed trainer)
are killed first, as nothing else can be in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..monitor.cgroup import proc_cgroup_paths
from ..monitor.memcg import CGROUP_ROOT, MemcgDir, memcg_of

DEFAULT_HIGH_FRACTION = 0.85  # the high mark, when not given, as a share of the hard limit
SYSTEMD_BOOTED = Path("/run/systemd/system")  # sd_booted(): systemd is pid 1


class ContainmentError(ValueError):
    """Limits that make no sense (a high mark at or above the hard limit, a limit too small to start Python)."""


MIN_MAX_BYTES = 64 * 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


def resolve_limits(max_bytes: int, high_bytes: int | None = None) -> tuple[int, int]:
    """(max, high): `high` defaults to DEFAULT_HIGH_FRACTION of `max` and must lie below it."""
    if max_bytes < MIN_MAX_BYTES:
        raise ContainmentError(f"memory max {max_bytes} bytes is below {MIN_MAX_BYTES // 2**20} MiB: "
                               "too small for a Python trainer")
    high = int(max_bytes * DEFAULT_HIGH_FRACTION) if high_bytes is None else high_bytes
    if not 0 < high < max_bytes:
        raise ContainmentError(f"memory high {high} must be positive and below memory max {max_bytes}")
    return max_bytes // PAGE * PAGE, high // PAGE * PAGE  # as the kernel keeps them: whole pages


@dataclass(frozen=True)
class Containment:
    """How the trainer will be contained (`plan`), or why it cannot be."""

    kind: str  # "systemd-scope" | "cgroup-v2" | "cgroup-v1" | "none"
    max: int
    high: int
    reason: str | None = None  # kind "none": why each mechanism is unavailable
    unit: str | None = None  # systemd-scope: the scope's name (without .scope)
    directory: Path | None = None  # cgroup-v1/v2: the group to create

    @property
    def available(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        limits = f"memory max {self.max / 2**20:.0f} MiB, high {self.high / 2**20:.0f} MiB"
        if self.kind == "systemd-scope":
            return f"contained in the systemd user scope {self.unit}.scope ({limits})"
        if self.kind in ("cgroup-v2", "cgroup-v1"):
            return f"contained in the {self.kind.replace('-', ' ')} memory group {self.directory} ({limits})"
        return f"containment unavailable: {self.reason}"

    def wrap(self, command: Sequence[str]) -> list[str]:
        """The command to start: behind systemd-run for a scope, else as it is."""
        if self.kind != "systemd-scope":
            return list(command)
        return ["systemd-run", "--user", "--scope", "--quiet", "--collect", f"--unit={self.unit}",
                "-p", f"MemoryMax={self.max}", "-p", f"MemoryHigh={self.high}", "--", *command]


def _writable(path: Path) -> str | None:
    """None if this process may create groups in `path`, else why not."""
    if not path.is_dir():
        return f"{path} does not exist"
    if not os.access(path, os.W_OK):
        return f"{path} is not writable by this user"
    return None


def _systemd_user(env: dict[str, str], which: Callable[[str], str | None], booted: Path) -> str | None:
    """None if a user systemd can start scopes, else why not."""
    if which("systemd-run") is None:
        return "no systemd-run on PATH"
    if not booted.is_dir():
        return "pid 1 is not systemd (no user systemd)"
    runtime = env.get("XDG_RUNTIME_DIR")
    if not runtime:
        return "XDG_RUNTIME_DIR is not set (no user session)"
    if not (Path(runtime) / "systemd" / "private").exists() and not (Path(runtime) / "bus").exists():
        return f"no user systemd manager listens in {runtime}"
    return None


def _controllers(path: Path, name: str) -> set[str]:
    try:
        return set((path / name).read_text(encoding="ascii").split())
    except (OSError, UnicodeDecodeError):
        return set()


def plan(max_bytes: int, high_bytes: int, run_name: str, pid: int | None = None, *, root: Path = CGROUP_ROOT,
         proc_cgroup: str | None = None, env: dict[str, str] | None = None,
         which: Callable[[str], str | None] = shutil.which, booted: Path = SYSTEMD_BOOTED) -> Containment:
    """The first mechanism that this machine allows (see the module's doc). Keyword arguments exist for fixture
    trees and argv tests; nothing is created here."""
    env = dict(os.environ) if env is None else env
    pid = os.getpid() if pid is None else pid
    name = f"crashguard-{run_name}-{pid}"
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text(encoding="utf-8", errors="replace")
        except OSError:
            proc_cgroup = ""
    v2_rel, v1_rel = proc_cgroup_paths(proc_cgroup)
    why: list[str] = []

    v2_mount = root if (root / "cgroup.controllers").exists() else None
    v2_memory = v2_mount is not None and "memory" in _controllers(v2_mount, "cgroup.controllers")
    systemd = _systemd_user(env, which, booted)
    if systemd is None and v2_memory:
        return Containment("systemd-scope", max_bytes, high_bytes, unit=name)
    why.append(f"systemd user scope: {systemd or 'cgroup v2 with the memory controller is not mounted'}")

    if v2_mount is not None and v2_memory and v2_rel is not None:
        own = v2_mount.joinpath(*[p for p in v2_rel.strip("/").split("/") if p and p != ".."])
        problem = _writable(own)
        if problem is None and "memory" not in _controllers(own, "cgroup.subtree_control"):
            problem = (f"{own} does not enable the memory controller for its children (cgroup.subtree_control); "
                       "it cannot while processes live in it: start from a delegated scope, e.g. "
                       "systemd-run --user --scope -p Delegate=yes")
        if problem is None:
            return Containment("cgroup-v2", max_bytes, high_bytes, directory=own / name)
        why.append(f"cgroup v2: {problem}")
    else:
        why.append("cgroup v2: no memory controller " + ("in this hierarchy" if v2_mount else "mounted"))

    v1_mount = root / "memory"
    if v1_rel is not None and (v1_mount / "memory.limit_in_bytes").exists():
        own = v1_mount.joinpath(*[p for p in v1_rel.strip("/").split("/") if p and p != ".."])
        problem = _writable(own)
        if problem is None:
            return Containment("cgroup-v1", max_bytes, high_bytes, directory=own / name)
        why.append(f"cgroup v1: {problem}")
    else:
        why.append("cgroup v1: the memory controller is not mounted")
    return Containment("none", max_bytes, high_bytes, reason="; ".join(why))


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


class ContainedGroup:
    """A cgroup v1/v2 group created for one trainer: `create()`, `enter_in_child()` (preexec), `remove()`."""

    def __init__(self, containment: Containment) -> None:
        if containment.directory is None or containment.kind not in ("cgroup-v1", "cgroup-v2"):
            raise ValueError(f"not a cgroup containment: {containment.kind}")
        self.containment = containment
        self.directory = containment.directory
        self.version = 2 if containment.kind == "cgroup-v2" else 1

    @property
    def memcg(self) -> MemcgDir:
        pressure = self.directory / "memory.pressure" if self.version == 2 else None
        return MemcgDir(self.version, self.directory, pressure)

    def create(self) -> None:
        """Make the group with its limits; on any failure nothing is left behind (OSError propagates)."""
        self.directory.mkdir(mode=0o755)
        try:
            c = self.containment
            if self.version == 2:
                _write(self.directory / "memory.max", str(c.max))
                _write(self.directory / "memory.high", str(c.high))
            else:
                _write(self.directory / "memory.limit_in_bytes", str(c.max))
                _write(self.directory / "memory.soft_limit_in_bytes", str(c.high))
        except OSError:
            with contextlib.suppress(OSError):
                self.directory.rmdir()
            raise

    def enter_in_child(self) -> None:
        """For subprocess's preexec_fn: move the forked child into the group before it executes the trainer."""
        _write(self.directory / "cgroup.procs", "0")

    def pids(self) -> list[int]:
        try:
            text = (self.directory / "cgroup.procs").read_text(encoding="ascii")
        except OSError:
            return []
        own = os.getpid()
        return [pid for pid in map(int, (p for p in text.split() if p.isdigit())) if pid > 1 and pid != own]

    def remove(self, grace: float = 3.0) -> str | None:
        """Remove the group once the trainer has ended; returns a note for the log if something was left."""
        deadline = time.monotonic() + grace
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)  # the run's workers notice their parent is gone
        left = self.pids()
        if left:
            # Only the run's own processes can be here (the group is ours, created for it): end them with it.
            kill_file = self.directory / "cgroup.kill"
            if self.version == 2 and kill_file.exists():
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
            else:
                for pid in left:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 2.0
            while self.pids() and time.monotonic() < end:
                time.sleep(0.05)
        for _ in range(20):
            try:
                self.directory.rmdir()
                return f"killed {len(left)} leftover process(es) of the run in {self.directory}" if left else None
            except FileNotFoundError:
                return None
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        return f"could not remove {self.directory}: {last.strerror or last}"


def scope_group(pid: int, unit: str, timeout: float = 2.0,
                root: Path = CGROUP_ROOT) -> tuple[MemcgDir | None, str | None]:
    """The memory group of a trainer started behind systemd-run, once it is in its scope: (group, problem).
    A scope without a memory group of its own means the user manager has no memory controller delegated, so
    MemoryMax has no effect there."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None, "the trainer ended before its scope could be checked"
        v2_rel, _ = proc_cgroup_paths(text)
        if v2_rel is not None and v2_rel.rstrip("/").endswith(f"/{unit}.scope"):
            break
        if time.monotonic() >= deadline:
            return None, f"the trainer did not appear in its scope {unit}.scope within {timeout:g} s"
        time.sleep(0.05)
    group = memcg_of(pid, root=root, proc_cgroup=text)
    if group is not None and group.path.name == f"{unit}.scope":
        return group, None
    return None, (f"the scope {unit}.scope has no memory group of its own: the memory controller is not delegated "
                  "to your user manager, so MemoryMax has no effect there (see docs/defences.md)")
