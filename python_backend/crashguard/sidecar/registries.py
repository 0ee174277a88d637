"""The runs directories the sidecar watches: one `Registry` per directory (a multi-root workspace has one runs
folder per workspace folder; the client sends them as absolute paths, setting `runsDirectories`).

`Registries` reads like one Registry to the code that scans, cleans up and stops runs (`scan`, `find`,
`runs_dir`), and knows which directory a run belongs to, so a stop never reaches a namesake in another folder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from ..runs.registry import Refusal, Registry, RunRecord, Snapshot, merge_recent
from ..runs.witness import Witness


class AmbiguousRun(LookupError):
    """A run name that exists in more than one watched directory, asked for without its directory."""


class Registries:
    """`witness`: the monitor's record of the runs it saw alive, shared by every directory (crash proofs)."""

    def __init__(self, runs_dirs: Iterable[Path], witness: Witness | None = None) -> None:
        self._registries: dict[Path, Registry] = {}
        self._witness = witness
        self._lock = threading.Lock()
        self.watch(runs_dirs)

    @property
    def dirs(self) -> tuple[Path, ...]:
        return tuple(self._registries)

    @property
    def settled_dirs(self) -> tuple[Path, ...]:
        """The directories whose every run folder has been looked at (a first look at thousands takes a few
        samples): their runs are known, so a run that appears in one later is news."""
        with self._lock:
            return tuple(d for d, registry in self._registries.items() if registry.settled)

    @property
    def runs_dir(self) -> Path:
        """The first directory (for messages of code written for one directory); Path() when none is watched."""
        return next(iter(self._registries), Path())

    def watch(self, runs_dirs: Iterable[Path]) -> list[Path]:
        """Watch exactly `runs_dirs` (resolved, in order, without repeats); a directory still watched keeps its
        Registry (and its parse cache). Returns the directories that are new."""
        wanted = list(dict.fromkeys(Path(d).expanduser().resolve() for d in runs_dirs))
        with self._lock:
            added = [d for d in wanted if d not in self._registries]
            self._registries = {d: self._registries.get(d) or Registry(d, self._witness) for d in wanted}
        return added

    def _each(self) -> list[Registry]:
        with self._lock:
            return list(self._registries.values())

    def scan(self) -> list[RunRecord]:
        return [record for registry in self._each() for record in registry.scan()]

    def find(self, name: str) -> list[RunRecord]:
        return [r for registry in self._each() for r in registry.find(name)]

    def snapshot(self, limit: int, drain: bool = False) -> Snapshot:
        """Every directory's snapshot as one: live runs, the `limit` most relevant ended runs of all of them."""
        shots = [registry.snapshot(limit, drain) for registry in self._each()]
        return Snapshot([r for s in shots for r in s.live], merge_recent(shots, limit), sum(s.ended for s in shots),
                        [r for s in shots for r in s.changed], [d for s in shots for d in s.removed])

    def refuse(self, record: RunRecord, reason: str) -> None:
        owner = self.owner(record.run_dir)
        if owner is not None:
            owner.refuse(record, reason)

    def take_refusals(self) -> list[Refusal]:
        """Refusals first seen since the last call, in every watched directory (see Registry.take_refusals)."""
        return [refusal for registry in self._each() for refusal in registry.take_refusals()]

    def owner(self, run_dir: str | Path) -> Registry | None:
        """The Registry whose directory holds the run folder `run_dir` (RunInfo.dir), or None."""
        parent = Path(run_dir).expanduser().resolve().parent
        with self._lock:
            return self._registries.get(parent)

    def registry_for(self, name: str, run_dir: str | None = None) -> Registry | None:
        """The Registry of the run `name`: the one holding `run_dir` when given, else the only directory with a
        run of that name (AmbiguousRun when several have one); None when no watched directory has it."""
        if run_dir is not None:
            owner = self.owner(run_dir)
            return owner if owner is not None and Path(run_dir).name == name else None
        having = [registry for registry in self._each() if registry.find(name)]
        if len(having) > 1:
            where = ", ".join(str(r.runs_dir) for r in having)
            raise AmbiguousRun(f"a run named {name!r} exists in several runs directories ({where}); name its dir")
        return having[0] if having else None
