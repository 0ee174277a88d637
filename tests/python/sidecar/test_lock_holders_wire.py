"""A stray lock holder through the real sidecar (issue 21, class 12), as the extension's Resume meets it: a witnessed
crash whose C-level child ignores SIGTERM is listed in crashGuard/runs with its `lockHolder`; crashGuard/endLockHolder
sends SIGTERM (the child lives on: `ok` false, `signalled` true), then SIGKILL only with `force` (the user's second
choice, "End Forcibly"). Malformed params are InvalidParams, a folder the monitor does not watch is refused, and
nothing is signalled on either. (The plain SIGTERM path is in test_hostile_runs_folder.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcInvalidParams
from sidecar_session import sidecar
from stray_helpers import StartStray, strays

from crashguard.sidecar import protocol as p


@pytest.fixture
def stray(runs_dir: Path) -> Iterator[StartStray]:
    with strays(runs_dir) as start:
        yield start


async def test_sigterm_then_end_forcibly_through_the_monitor(runs_dir: Path, tmp_path: Path,
                                                             stray: StartStray) -> None:
    async with sidecar({"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}) as session:
        await session.wait_samples(2)
        s = stray("brats", "--ignore-term")
        await session.wait_for(p.RUN_EVENT, lambda e: e["event"] == "started")
        s.crash()
        await session.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed")
        [run] = (await session.request(p.RUNS, {}))["runs"]
        assert run["crashProof"] == "witnessed"
        assert run["lockHolder"]["pid"] == s.child and "stray_lock_child.py" in run["lockHolder"]["command"]
        run_dir = run["dir"]
        for bad in ({"dir": "runs/brats", "pid": s.child}, {"dir": run_dir, "pid": True},
                    {"dir": run_dir, "pid": s.child, "force": "yes"}, {"dir": run_dir, "pid": s.child, "extra": 1},
                    {"dir": run_dir, "pid": s.child, "rank": -1}):
            with pytest.raises(JsonRpcInvalidParams):
                await session.request(p.END_LOCK_HOLDER, bad)
        elsewhere = str(tmp_path / "other" / "brats")
        outside = await session.request(p.END_LOCK_HOLDER, {"dir": elsewhere, "pid": s.child, "force": True})
        assert (outside["ok"], outside["signalled"]) == (False, False) and "not in a watched" in outside["message"]
        assert s.alive()
        term = await session.request(p.END_LOCK_HOLDER, {"dir": run_dir, "pid": s.child}, timeout=30)
        assert (term["ok"], term["signalled"]) == (False, True) and "SIGTERM" in term["message"], term
        assert s.alive()
        [run] = (await session.request(p.RUNS, {}))["runs"]
        assert run["lockHolder"]["pid"] == s.child  # still named: the extension offers "End Forcibly"
        kill = await session.request(p.END_LOCK_HOLDER, {"dir": run_dir, "pid": s.child, "force": True}, timeout=30)
        assert (kill["ok"], kill["signalled"]) == (True, True) and "SIGKILL" in kill["message"], kill
        assert not s.alive()
        [run] = (await session.request(p.RUNS, {}))["runs"]
        assert run["lockHolder"] is None
