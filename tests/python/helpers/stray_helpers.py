"""A registered run whose C-level fork keeps the run's lock after the run is killed (children/stray_lock_child.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
from locations import CHILDREN

STRAY = CHILDREN / "stray_lock_child.py"


class Stray:
    def __init__(self, parent: subprocess.Popen[str], child: int, thread: int) -> None:
        self.parent, self.child, self.thread = parent, child, thread

    @property
    def created(self) -> float:
        return psutil.Process(self.child).create_time()

    def alive(self) -> bool:
        try:
            return psutil.Process(self.child).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def crash(self) -> None:
        """kill -9 of the trainer: its C-level child lives on, holding the lock."""
        self.parent.kill()
        self.parent.wait(timeout=10)
        assert self.alive()


StartStray = Callable[..., Stray]


@contextmanager
def strays(runs_dir: Path) -> Iterator[StartStray]:
    started: list[Stray] = []

    def start(name: str, *flags: str) -> Stray:
        parent = subprocess.Popen([sys.executable, str(STRAY), "--runs-dir", str(runs_dir), "--name", name, *flags],
                                  stdout=subprocess.PIPE, text=True)
        assert parent.stdout is not None
        words = parent.stdout.readline().split()
        assert words[:1] == ["ready"], words
        s = Stray(parent, int(words[1]), int(words[2]))
        started.append(s)
        return s

    try:
        yield start
    finally:
        for s in started:
            for pid in (s.child, s.parent.pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            s.parent.wait(timeout=10)
