"""oom_score_adj is a documented, reversible choice on every front door: a notebook kernel that runs a guarded block
is the kernel's preferred OOM victim only while the block runs, and gets its own score back after it (whatever
ended the block); 0 or None opts out without raising. Each case runs in a real child process that holds no
CAP_SYS_RESOURCE (as a user's kernel does not: only raising needs no privilege, going back down to a value at or
above the floor a privileged process set does not either)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from integration_helpers import child_env

KERNEL = r"""
import json, sys
import torch
from torch import nn
import crashguard

def score():
    return int(open("/proc/self/oom_score_adj").read())

runs, start_at, option, end = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
open("/proc/self/oom_score_adj", "w").write(str(start_at))  # the kernel's own score, before any block
seen = {"before": score()}
model = nn.Linear(4, 1)
options = {"watchdog": False, "handle_signals": False, **option}
for cell in range(2):  # two cells, one after the other, in the same kernel
    try:
        with crashguard.guarded_run(f"cell{cell}", model=model, runs_dir=runs,
                                    optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **options) as run:
            run.step(torch.randn(4, 4), lambda b: model(b).square().mean())
            seen[f"inside{cell}"] = score()
            if end == "error":
                raise ValueError("a bug in the cell")
    except ValueError:
        pass
    seen[f"after{cell}"] = score()
print(json.dumps(seen))
"""


def kernel(tmp_path: Path, start_at: int, option: dict[str, object], end: str = "normal") -> dict[str, int]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_SYS_RESOURCE for this child")
    drop = [setpriv, "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--"]
    out = subprocess.run([*drop, sys.executable, "-c", KERNEL, str(tmp_path / "runs"), str(start_at),
                          json.dumps(option), end], capture_output=True, text=True, timeout=120, env=child_env())
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("end", ["normal", "error"])
def test_the_kernels_own_score_is_back_after_each_block(tmp_path: Path, end: str) -> None:
    seen = kernel(tmp_path, start_at=100, option={}, end=end)
    assert seen == {"before": 100, "inside0": 500, "after0": 100, "inside1": 500, "after1": 100}


def test_a_chosen_score_and_a_higher_one_the_user_set(tmp_path: Path) -> None:
    assert kernel(tmp_path, start_at=0, option={"oom_score_adj": 300}) == \
        {"before": 0, "inside0": 300, "after0": 0, "inside1": 300, "after1": 0}
    assert kernel(tmp_path, start_at=800, option={}) == \
        {"before": 800, "inside0": 800, "after0": 800, "inside1": 800, "after1": 800}  # never lowered


@pytest.mark.parametrize("opt_out", [0, None])
def test_zero_or_none_opts_out_without_raising(tmp_path: Path, opt_out: int | None) -> None:
    seen = kernel(tmp_path, start_at=100, option={"oom_score_adj": opt_out})
    assert seen == {"before": 100, "inside0": 100, "after0": 100, "inside1": 100, "after1": 100}
    status = json.loads((tmp_path / "runs" / "cell0" / "status.json").read_text())
    assert status["oom_score_adj"] == 100  # the score in force, recorded as before


def test_an_out_of_range_score_is_refused_naming_the_argument(tmp_path: Path) -> None:
    import torch
    from torch import nn

    import crashguard

    model = nn.Linear(4, 1)
    with pytest.raises(ValueError, match="oom_score_adj"):
        crashguard.guarded_run("bad", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                               runs_dir=tmp_path / "runs", oom_score_adj=1001)
