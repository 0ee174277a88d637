"""The trainer volunteers: RunHook raises its own oom_score_adj at registration (its forked workers inherit it),
never lowers one set higher, never touches another process's; an unprivileged process may do so; the status file
records it and a forged out-of-range score is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crashguard.guard.oom_score import DEFAULT_OOM_SCORE_ADJ, read_oom_score_adj, volunteer
from crashguard.runs import RunHook
from crashguard.runs.status import InvalidStatus, parse_status

REGISTER = """
import json, os, sys
from crashguard.runs import RunHook, RunState
kwargs = json.loads(sys.argv[2])
if "start_at" in kwargs:
    open("/proc/self/oom_score_adj", "w").write(str(kwargs.pop("start_at")))
before = open("/proc/self/oom_score_adj").read().strip()
hook = RunHook("scored", runs_dir=sys.argv[1], **kwargs)
hook.start()
r, w = os.pipe()
if os.fork() == 0:  # a DataLoader worker started after registration
    os.write(w, open("/proc/self/oom_score_adj").read().strip().encode()); os._exit(0)
os.wait()
worker = os.read(r, 16).decode()
print(json.dumps({"before": before, "after": open("/proc/self/oom_score_adj").read().strip(), "worker": worker,
                  "parent": open(f"/proc/{os.getppid()}/oom_score_adj").read().strip()}))
hook.finish(RunState.FINISHED)
"""


def register(tmp_path: Path, **kwargs: object) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", REGISTER, str(tmp_path / "runs"), json.dumps(kwargs)],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_registration_raises_the_runs_own_score_and_its_workers_inherit_it(tmp_path: Path) -> None:
    mine = read_oom_score_adj()
    seen = register(tmp_path)
    assert seen["after"] == seen["worker"] == str(DEFAULT_OOM_SCORE_ADJ)
    assert seen["parent"] == str(mine) == seen["before"]  # the process that started it (the editor) untouched
    assert read_oom_score_adj() == mine
    status = json.loads((tmp_path / "runs" / "scored" / "status.json").read_text())
    assert status["oom_score_adj"] == DEFAULT_OOM_SCORE_ADJ


def test_a_configured_score_none_and_a_higher_one_already_set(tmp_path: Path) -> None:
    assert register(tmp_path, oom_score_adj=300)["after"] == "300"
    assert register(tmp_path, oom_score_adj=None)["after"] == register(tmp_path)["before"]  # left alone
    assert register(tmp_path, start_at=800)["after"] == "800"  # never lowered


def test_a_bad_score_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"oom_score_adj: expected an integer -1000\.\.1000"):
        RunHook("x", runs_dir=tmp_path, oom_score_adj=5000)
    with pytest.raises(ValueError, match="oom_score_adj"):
        RunHook("x", runs_dir=tmp_path, oom_score_adj=True)  # type: ignore[arg-type]
    forged = {"name": "x", "pid": 1, "create_time": 1.0, "oom_score_adj": -5000}
    with pytest.raises(InvalidStatus, match=r"oom_score_adj: expected -1000\.\.1000"):
        parse_status(forged)


UNPRIVILEGED = """
import ctypes, os, sys
from crashguard.guard.oom_score import volunteer  # imported (and its codec loaded) before root is dropped:
volunteer(None)                                        # root's interpreter files are not readable by nobody
os.setgid(65534); os.setuid(65534)
# A process that changed its uid is made non-dumpable, which makes its /proc files root's; a process started as
# the user (a real trainer) is dumpable: be one.
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
print(volunteer(400), volunteer(200))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user for the check")
def test_an_unprivileged_process_may_raise_its_score() -> None:
    out = subprocess.run([sys.executable, "-c", UNPRIVILEGED], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["400", "400"]  # raising needs no privilege; volunteer never lowers


def test_volunteer_none_reads_only() -> None:
    assert volunteer(None) == read_oom_score_adj()
