"""The training features ship as the `crashguard` wheel a user installs into their own environment
(`pip install crashguard[train]`): a wheel built from this tree installs into a fresh venv and `crashguard train`
runs there on synthetic data, in a folder that is not this repository (so nothing is imported from the source).

torch goes in first, as its own step: a plain `torch` requirement on a machine without a GPU would pull the
multi-GB CUDA build. Like scripts/bootstrap.sh, the test takes torch from pip's own configuration without the
index (a local CPU wheel) or from the index named by $CRASHGUARD_TORCH_INDEX, and is skipped when neither has it.

What the wheel holds is checked without installing it: one top-level package, `crashguard` (the source root
`python_backend/` is not one), its entry points, and none of the developer benchmarks (benchmarks/).
The wheel is built from a copy of the files the build reads, so the build leaves nothing in the checkout.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TORCH = os.environ.get("CRASHGUARD_TORCH", "torch==2.13.0")
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "python_backend")


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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, source / name)
    dist = root / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", dist,
        source, cwd=root)
    [built] = dist.glob("crashguard-*-py3-none-any.whl")
    return built


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [name for name in archive.namelist() if not name.endswith("/")]


def dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        [path] = [n for n in archive.namelist() if n.endswith(f".dist-info/{name}")]
        return archive.read(path).decode()


def test_the_wheel_has_one_top_level_package_crashguard(wheel: Path) -> None:
    files = wheel_files(wheel)
    tops = {name.split("/", 1)[0] for name in files}
    metadata = "-".join(wheel.name.split("-")[:2]) + ".dist-info"  # crashguard-0.1.0.dist-info
    assert tops == {"crashguard", metadata}, tops
    assert dist_info(wheel, "top_level.txt").split() == ["crashguard"]
    # The layers the architecture names are all there, the step core and the typing marker included.
    for part in ("__init__.py", "py.typed", "step/__init__.py", "step/guarded_step.py", "util/units.py",
                 "sidecar/main.py", "pytest_plugin/__init__.py", "run.py", "monai.py", "lightning.py"):
        assert f"crashguard/{part}" in files, part


def test_the_wheel_declares_the_console_script_and_the_pytest_plugin(wheel: Path) -> None:
    points = configparser.ConfigParser()
    points.read_string(dist_info(wheel, "entry_points.txt"))
    assert dict(points["console_scripts"]) == {"crashguard": "crashguard.cli:main"}
    assert dict(points["pytest11"]) == {"crashguard": "crashguard.pytest_plugin"}


def test_developer_benchmarks_never_ship_in_the_wheel(wheel: Path) -> None:
    benchmarks = {path.stem for path in (REPO / "benchmarks").glob("*.py") if path.stem != "__init__"}
    assert benchmarks, "benchmarks/ should hold the developer benchmarks"
    shipped = {Path(name).stem for name in wheel_files(wheel)}
    assert not benchmarks & shipped, benchmarks & shipped
    assert not [name for name in wheel_files(wheel) if "bench" in Path(name).name], "a benchmark module shipped"


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_trains(tmp_path: Path, wheel: Path) -> None:
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
