"""Discover the training runs registered under the runs directory and tell which are alive, finished or crashed.

A run writes `runs/<name>/status.json` (other ranks `status.rankN.json`). Files are re-parsed only when they
change (mtime/size), so a scan every second costs a directory listing plus one process check per live run.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..monitor.processes import tree_rss
from .files import read_json
from .liveness import Verdict, verify
from .status import STATUS_FILE, RunState, RunStatus

UNKNOWN_EXIT = "unknown (the process ended without recording why)"


@dataclass(frozen=True)
class RunInfo:
    """A run as the client sees it (see docs/protocol.md, RunInfo)."""

    name: str
    dir: str
    pid: int | None
    rank: int
    world_size: int
    state: str
    alive: bool
    step: int | None
    epoch: int | None
    micro_batch: int | None
    accumulation: int | None
    loss: float | None
    peak_rss: int | None
    tree_rss: int | None
    vram: int | None
    last_event: str | None
    exit_cause: str | None
    config: str | None
    checkpoint: str | None
    started: float | None
    updated: float | None
    resume_command: dict[str, Any] | None = None  # {"argv", "cwd"} (contract: argv[0] is the interpreter)


@dataclass(frozen=True)
class RunRecord:
    """A status file, parsed, with the verdict on its process."""

    run_dir: Path
    status_file: Path
    status: RunStatus
    verdict: Verdict

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def rank(self) -> int:
        return self.status.rank

    @property
    def state(self) -> str:
        """The recorded state, or `crashed` when the process is gone without reaching a terminal state."""
        recorded = RunState(self.status.state)
        if recorded.terminal or self.verdict.alive:
            return recorded.value
        return RunState.CRASHED.value

    @property
    def exit_cause(self) -> str | None:
        if self.state != RunState.CRASHED.value:
            return self.status.exit_cause
        if self.status.exit_cause:
            return self.status.exit_cause  # recorded by the supervisor of the train command
        if self.verdict.reason and "ancestor" in self.verdict.reason:
            return f"not a Crash Guard run: {self.verdict.reason}"
        return UNKNOWN_EXIT

    def info(self, vram_by_pid: dict[int, int] | None = None) -> RunInfo:
        s = self.status
        alive = self.verdict.alive
        tree = tree_rss(s.pid) if alive else None
        vram = vram_by_pid.get(s.pid) if alive and vram_by_pid else None
        return RunInfo(
            name=self.name, dir=str(self.run_dir), pid=s.pid, rank=s.rank, world_size=s.world_size,
            state=self.state, alive=alive, step=s.step, epoch=s.epoch, micro_batch=s.micro_batch,
            accumulation=s.accumulation, loss=s.loss, peak_rss=s.peak_rss, tree_rss=tree.rss if tree else None,
            vram=vram,
            last_event=s.last_event, exit_cause=self.exit_cause, config=s.config, checkpoint=s.checkpoint,
            started=s.started or None, updated=s.updated or None, resume_command=s.resume_command,
        )


class Registry:
    """The runs under one directory. Thread-safe; `scan()` is cheap enough for every sample."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.runs_dir = Path(runs_dir).expanduser().resolve()
        self._cache: dict[Path, tuple[int, int, RunStatus | None]] = {}
        self._lock = threading.Lock()

    def _status_files(self) -> list[tuple[Path, Path]]:
        found: list[tuple[Path, Path]] = []
        try:
            run_dirs = sorted((Path(e.path) for e in os.scandir(self.runs_dir) if e.is_dir()), key=lambda p: p.name)
        except OSError:
            return found  # no runs directory yet
        for run_dir in run_dirs:
            try:
                names = [e.name for e in os.scandir(run_dir) if e.is_file()]
            except OSError:
                continue
            for name in sorted(names):
                if name == STATUS_FILE or (name.startswith("status.rank") and name.endswith(".json")):
                    found.append((run_dir, run_dir / name))
        return found

    def _parse(self, path: Path) -> RunStatus | None:
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[:2] == key:
            return cached[2]
        status = RunStatus.from_dict(read_json(path))
        self._cache[path] = (*key, status)
        return status

    def scan(self) -> list[RunRecord]:
        """Every valid status file with a fresh liveness verdict (terminal runs are not checked)."""
        records: list[RunRecord] = []
        with self._lock:
            files = self._status_files()
            for stale in set(self._cache) - {path for _, path in files}:
                del self._cache[stale]
            for run_dir, path in files:
                status = self._parse(path)
                if status is None:
                    continue  # not a status file of ours (or half-written by a foreign tool)
                if RunState(status.state).terminal:
                    verdict = Verdict(False, False, f"run ended ({status.state})")
                else:
                    verdict = verify(status.pid, status.create_time)
                records.append(RunRecord(run_dir, path, status, verdict))
        return records

    def find(self, name: str) -> list[RunRecord]:
        return [r for r in self.scan() if r.name == name]

    def infos(self, vram_by_pid: dict[int, int] | None = None) -> list[RunInfo]:
        return [r.info(vram_by_pid) for r in self.scan()]
