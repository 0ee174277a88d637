"""The training features ship as the `crashguard` wheel a user installs into their own environment
(`pip install crashguard[train]`): a wheel built from this tree installs into a fresh venv and `crashguard train`
runs there on synthetic data, in a folder that is not this repository (so nothing is imported from the source).

torch goes in first, as its own step: a plain `torch` requirement on a machine without a GPU would pull the
multi-GB CUDA build. Like scripts/bootstrap.sh, the test takes torch from pip's own configuration without the
index (a local CPU wheel) or from the index named by $CRASHGUARD_TORCH_INDEX, and is skipped when neither has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TORCH = os.environ.get("CRASHGUARD_TORCH", "torch==2.13.0")
pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})})
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def install_cpu_torch(python: Path, cwd: Path) -> None:
    index = os.environ.get("CRASHGUARD_TORCH_INDEX")
    if index:
        run(python, "-m", "pip", "install", "-q", TORCH, "--index-url", index, cwd=cwd)
        return
    local = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", TORCH], cwd=cwd,
                           capture_output=True, text=True, timeout=600)
    if local.returncode != 0:
        pytest.skip(f"no local {TORCH} wheel and no $CRASHGUARD_TORCH_INDEX: installing it would pull a CUDA build")
    run(python, "-m", "pip", "install", "-q", TORCH, cwd=cwd)  # its small dependencies


def test_the_wheel_installs_into_a_fresh_venv_and_trains(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", dist, REPO,
        cwd=tmp_path)
    [wheel] = dist.glob("crashguard-*-py3-none-any.whl")
    venv = tmp_path / "venv"
    run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    install_cpu_torch(python, tmp_path)
    run(python, "-m", "pip", "install", "-q", f"{wheel}[train]", cwd=tmp_path)

    project = tmp_path / "my-project"  # the user's folder: not this repository
    project.mkdir()
    where = run(python, "-c", "import crashguard, torch; print(crashguard.__file__); print(torch.__version__)",
                cwd=project)
    assert str(venv) in where.splitlines()[0] and "+cpu" in where.splitlines()[1], where
    crashguard = venv / "bin" / "crashguard"
    run(crashguard, "sample-data", "--cases", "4", "--size", "24", cwd=project)
    config = project / "config.json"
    config.write_text(json.dumps({
        "name": "wheel", "data": {"root": "data", "cache_rate": 1.0, "workers": 0, "val_fraction": 0.25},
        "model": {"name": "segresnet", "init_filters": 8, "levels": 3},
        "train": {"roi_size": [24, 24, 24], "epochs": 1, "effective_batch": 2, "micro_batch": 2, "threads": 1,
                  "sw_batch_size": 2, "seed": 0},
        "checkpoint": {"every_steps": 2, "keep": 2},
    }))
    run(crashguard, "train", "--config", config, "--runs-dir", "runs", "--no-progress", cwd=project)
    status = json.loads((project / "runs" / "wheel" / "status.json").read_text())
    assert status["state"] == "finished", status
    assert list((project / "runs" / "wheel" / "checkpoints").glob("*.pt"))
