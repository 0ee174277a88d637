"""sample-data and check-data from the command line; --resume never on a run that has checkpoints; run names."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from training_helpers import crashguard


def test_sample_data_then_check_data(tmp_path: Path) -> None:
    made = crashguard("sample-data", "--cases", "4", "--size", "24", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    task = tmp_path / "data" / "Task01_BrainTumour"  # the default location the preset points at
    meta = json.loads((task / "dataset.json").read_text())
    assert meta["numTraining"] == 4 and len(list((task / "imagesTr").glob("*.nii.gz"))) == 4
    checked = crashguard("check-data", cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout == ""
    assert "4 cases, 0 problems" in checked.stderr
    bad = crashguard("sample-data", "--cases", "1", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "at least 2" in bad.stderr


@pytest.mark.slow
def test_resume_never_refuses_existing_checkpoints(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 1})
    first = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--no-supervise", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--resume", "never", cwd=tmp_path)
    assert again.returncode == 2
    assert "already has checkpoints" in again.stderr.strip().splitlines()[-1]
    done = crashguard("train", "--config", str(config), "--runs-dir", "runs", cwd=tmp_path)  # auto: nothing left
    assert done.returncode == 0 and "already complete at step 2" in done.stderr


def test_a_run_name_that_is_a_path_is_refused_before_anything_is_written(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 1})
    for name in ("../escape", "a/b", ".hidden", "-flag"):
        refused = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", name, cwd=tmp_path)
        assert refused.returncode == 2 and "--run-name" in refused.stderr, refused.stderr[-500:]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()
