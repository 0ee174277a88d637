"""crashGuard/lockHolders and crashGuard/endLockHolder against the real sidecar (issue 21, class 12): a crashed
run's stray child that keeps the run's lock is listed with its command line and ended on request; a folder the
monitor does not watch, a pid that is not the listed holder, and malformed params are refused, nothing signalled."""

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


async def test_the_monitor_names_and_ends_a_stray_lock_holder(runs_dir: Path, tmp_path: Path,
                                                               stray: StartStray) -> None:
    s = stray("brats")
    s.crash()
    run_dir = str(runs_dir / "brats")
    async with sidecar({"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}) as session:
        holders = (await session.request(p.LOCK_HOLDERS, {"dir": run_dir}))["holders"]
        assert [(h["pid"], h["rank"], h["isRun"]) for h in holders] == [(s.child, 0, False)]
        assert "stray_lock_child.py" in holders[0]["command"]
        created = holders[0]["createTime"]
        # Not the listed process (another create time), or a folder the monitor does not watch: refused.
        stale = await session.request(p.END_LOCK_HOLDER, {"dir": run_dir, "pid": s.child, "createTime": created + 9})
        assert (stale["ok"], stale["signalled"]) == (False, False)
        elsewhere = str(tmp_path / "other" / "brats")
        assert (await session.request(p.LOCK_HOLDERS, {"dir": elsewhere}))["holders"] == []
        outside = await session.request(p.END_LOCK_HOLDER, {"dir": elsewhere, "pid": s.child, "createTime": created})
        assert (outside["ok"], outside["signalled"]) == (False, False)
        assert "not in a runs directory" in outside["message"]
        for bad in ({"dir": "runs/brats"}, {"dir": run_dir, "extra": 1}):
            with pytest.raises(JsonRpcInvalidParams):
                await session.request(p.LOCK_HOLDERS, bad)
        for bad in ({"dir": run_dir, "pid": s.child}, {"dir": run_dir, "pid": True, "createTime": created},
                    {"dir": run_dir, "pid": s.child, "createTime": created, "force": "yes"}):
            with pytest.raises(JsonRpcInvalidParams):
                await session.request(p.END_LOCK_HOLDER, bad)
        assert s.alive()
        ended = await session.request(p.END_LOCK_HOLDER, {"dir": run_dir, "pid": s.child, "createTime": created})
        assert (ended["ok"], ended["signalled"], ended["released"]) == (True, True, True), ended
        assert (await session.request(p.LOCK_HOLDERS, {"dir": run_dir}))["holders"] == []
