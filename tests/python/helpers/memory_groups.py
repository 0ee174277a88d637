"""Memory cgroups for the defence drills: every memory hog of these tests runs inside a group the test creates
(under the test process's own group) and removes, with a limit far below the machine's RAM, so a drill that goes
wrong can only OOM inside its group, never the shared machine. Where no memory cgroup is writable, the tests that
need one are skipped with the reason.

Written independently of crashguard.runs.containment (which the tests check against this). A module of its
own (not conftest.py: another test folder's conftest may be the one `import conftest` finds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own(controller_line: str) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if (controller_line == "" and hierarchy == "0" and controllers == "") or \
                (controller_line and controller_line in controllers.split(",")):
            return path
    return None


def writable_parent() -> tuple[Path, int] | str:
    """(a folder where this process may create a memory group, its cgroup version), or why there is none."""
    why = []
    v1 = _own("memory")
    if v1 is not None and (ROOT / "memory" / "memory.limit_in_bytes").exists():
        parent = ROOT / "memory" / v1.strip("/")
        if os.access(parent, os.W_OK):
            return parent, 1
        why.append(f"cgroup v1 group {parent} is not writable")
    v2 = _own("")
    if v2 is not None and (ROOT / "cgroup.controllers").exists():
        parent = ROOT / v2.strip("/")
        controls = (parent / "cgroup.subtree_control").read_text().split() if parent.is_dir() else []
        if os.access(parent, os.W_OK) and "memory" in controls:
            return parent, 2
        why.append(f"cgroup v2 group {parent} is not writable or does not delegate the memory controller")
    return "no writable memory cgroup here: " + ("; ".join(why) or "no memory controller mounted")


@dataclass
class MemoryGroup:
    path: Path
    version: int

    def _file(self, v1: str, v2: str) -> Path:
        return self.path / (v2 if self.version == 2 else v1)

    def set_limit(self, limit: int) -> None:
        self._file("memory.limit_in_bytes", "memory.max").write_text(str(limit))

    def spawn(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start `argv` inside the group (the child joins before it executes: all its memory is charged here)."""
        procs = str(self.path / "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as handle:
                handle.write("0")

        return subprocess.Popen(list(argv), preexec_fn=join, **kwargs)  # type: ignore[call-overload]

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def oom_kills(self) -> int:
        events = "memory.events.local" if (self.path / "memory.events.local").exists() else "memory.events"
        text = self._file("memory.oom_control", events).read_text()
        return int(dict(line.split() for line in text.splitlines()).get("oom_kill", 0))

    def read(self, v1: str, v2: str) -> str:
        return self._file(v1, v2).read_text()


MakeGroup = Callable[[int], MemoryGroup]


def remove(group: MemoryGroup, timeout: float = 10.0) -> None:
    """Empty `group` (SIGKILL to each process in it) and remove it; raises if it is still there after `timeout`."""
    deadline = time.monotonic() + timeout
    while group.path.exists() and time.monotonic() < deadline:
        for pid in group.pids() if group.path.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            group.path.rmdir()
        time.sleep(0.05)
    if group.path.exists():
        raise RuntimeError(f"could not remove the memory group {group.path}")
