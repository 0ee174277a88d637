"""Choosing which run to stop counts each page once: a run whose forked workers share its memory (DataLoader
workers after fork) is not taken for the heaviest because summed RSS counts the shared pages once per process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashguard.monitor.processes import tree_footprint, tree_rss
from crashguard.runs.registry import Registry
from crashguard.sidecar.escalation import heaviest

MiB = 2**20

# A registered run holding `mb` MiB (touched), with `forks` forked children that share it without writing to it.
# The children leave when their parent is gone (no orphan outlives a failed test).
FORKER = """
import os, sys, time
from crashguard.runs import RunHook
mb, forks, name, runs_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
buf = bytearray(mb * 2**20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
parent = os.getpid()
for _ in range(forks):
    if os.fork() == 0:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)
hook = RunHook(name, runs_dir=runs_dir)
hook.start()
while True:
    time.sleep(0.5)
    hook.step_boundary(step=hook.status.step + 1)
"""


@pytest.fixture
def start_forker(runs_dir: Path) -> Iterator:
    started: list[subprocess.Popen] = []

    def start(name: str, mb: int, forks: int) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", FORKER, str(mb), str(forks), name, str(runs_dir)])
        started.append(proc)
        deadline = time.monotonic() + 30
        while not (runs_dir / name / "status.json").exists():
            assert time.monotonic() < deadline and proc.poll() is None, f"{name} did not register"
            time.sleep(0.05)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def test_a_forked_tree_counts_its_shared_pages_once_and_the_truly_heaviest_run_is_chosen(
        runs_dir: Path, start_forker) -> None:
    forked = start_forker("forked", mb=150, forks=3)  # 150 MiB, shared by 4 processes
    private = start_forker("private", mb=250, forks=0)  # 250 MiB of its own

    started = time.perf_counter()
    shared = tree_footprint(forked.pid)
    own = tree_footprint(private.pid)
    took_ms = (time.perf_counter() - started) * 1000
    assert shared is not None and own is not None
    print(f"\nforked tree: {shared.processes} processes, RSS summed {shared.rss / MiB:.0f} MiB, PSS "
          f"{shared.pss / MiB:.0f} MiB, USS {shared.uss / MiB:.0f} MiB; private run: RSS {own.rss / MiB:.0f} MiB, "
          f"PSS {own.pss / MiB:.0f} MiB; both trees read in {took_ms:.1f} ms")
    assert shared.processes == 4
    assert shared.rss > 4 * 140 * MiB  # summed RSS counts the 150 MiB four times
    assert 140 * MiB < shared.pss < 150 * MiB + 4 * 25 * MiB  # PSS counts it once (+ 4 interpreters' own pages)
    assert shared.uss < shared.pss  # the shared buffer is no one's alone
    assert own.pss > 250 * MiB

    infos = Registry(runs_dir).infos()
    by_summed_rss = max(infos, key=lambda r: r.tree_rss or 0)
    assert by_summed_rss.name == "forked"  # the ranking this replaces would stop the wrong run
    victim = heaviest(infos, "RAM")
    assert victim is not None and (victim.run, victim.measure) == ("private", "PSS")
    tree = tree_rss(forked.pid)
    assert tree is not None and tree.processes == 4


def test_the_footprint_of_a_gone_process_is_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_footprint(proc.pid) is None
