"""A short real training run (supervised child, CPU, synthetic data): validation Dice rises clearly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from training_helpers import crashguard, records


@pytest.mark.slow
def test_short_run_learns(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 30, "val_at_start": True, "val_every_epochs": 10},
                          checkpoint={"every_steps": 8, "keep": 2})
    result = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", "learn",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "runs" / "learn"
    vals = records(run_dir, "val")
    start, end = vals[0]["dice_mean"], vals[-1]["dice_mean"]
    print("validation Dice:", [(v["dice_mean"], v["dice_tc"], v["dice_wt"], v["dice_et"]) for v in vals])
    assert vals[0]["step"] == 0 and vals[-1]["step"] == 60
    assert end > start + 0.3, vals
    assert all(vals[-1][f"dice_{r}"] > 0.3 for r in ("tc", "wt", "et")), vals[-1]
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == list(range(1, 61))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 60
    assert status["checkpoint"].endswith("step-00000060.pt")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "step-00000056.pt",
                                                                          "step-00000060.pt"]
    assert "it/s" in result.stderr or "step/s" in result.stderr  # the progress bar went to stderr
