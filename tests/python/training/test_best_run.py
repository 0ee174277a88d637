"""Real short runs: best.pt kept through keep=1 pruning, the best and the early-stopping count continued across a
resume (the resumed run stops early at its first validation only because the count was restored), TensorBoard
scalars read back, and `--validate-only` evaluating best.pt without writing a checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from training_helpers import crashguard, records


@pytest.mark.slow
def test_best_checkpoint_early_stop_and_validate_only(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base = {"roi_size": [16, 16, 16], "epochs": 10}  # 2 steps an epoch, a validation at each epoch end
    first = write_config("first.json", train={**base, "max_steps": 4}, checkpoint={"every_steps": 2, "keep": 1},
                         logging={"tensorboard": True})
    # Gains of more than 1.0 are impossible: the first validation of the resumed run spends a patience of 1, but
    # only if the best of the first run was restored (a fresh count takes any first validation as a gain).
    second = write_config("second.json", train={**base, "max_steps": 8, "early_stopping_patience": 1,
                                                "early_stopping_min_delta": 1.0},
                          checkpoint={"every_steps": 2, "keep": 1}, logging={"tensorboard": True})
    run_dir = tmp_path / "runs" / "best"
    ckpt = run_dir / "checkpoints"

    def train(config: Path, *extra: str) -> tuple[int, str, str]:
        done = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", "best",
                          "--no-supervise", "--no-progress", *extra, cwd=tmp_path)
        return done.returncode, done.stdout, done.stderr

    code, _, err = train(first)
    assert code == 0, err[-2000:]
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.pt", "step-00000004.pt"]
    code, _, err = train(second)
    assert code == 0, err[-2000:]
    assert "early stop at step 6: no improvement in 1 validations" in err.strip().splitlines()[-1]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 6
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.pt", "step-00000006.pt"]  # keep=1 spared best.pt

    vals = records(run_dir, "val")
    assert [v["step"] for v in vals] == [2, 4, 6]
    means = [v["dice_mean"] for v in vals]
    running = [i for i, m in enumerate(means) if all(m > earlier for earlier in means[:i])]
    bests = records(run_dir, "best")  # a metrics record, rewound with its validation
    assert [b["step"] for b in bests] == [vals[i]["step"] for i in running]  # new bests only, across the resume
    top = max(range(3), key=lambda i: (means[i], -i))
    best = torch.load(ckpt / "best.pt", weights_only=True)
    assert best["step"] == vals[top]["step"] and best["best"]["metric"] == means[top]
    final = torch.load(ckpt / "step-00000006.pt", weights_only=True)["best"]
    assert final == {"metric": means[top], "step": vals[top]["step"], "stale": 1}

    before = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    status_text = (run_dir / "status.json").read_text()
    code, out, err = train(second, "--validate-only")
    assert code == 0, err[-2000:]
    result = json.loads(out.strip())
    assert result["checkpoint"] == str(ckpt / "best.pt") and result["step"] == vals[top]["step"]
    assert result["dice_mean"] == means[top]
    assert {k: result[k] for k in ("dice_tc", "dice_wt", "dice_et")} == \
        {k: vals[top][k] for k in ("dice_tc", "dice_wt", "dice_et")}
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()} == before  # nothing written, nothing pruned
    assert (run_dir / "status.json").read_text() == status_text  # the trained run's status stands
    evaluation = records(run_dir)[-1]
    assert evaluation["type"] == "val" and evaluation["evaluation"] is True
    assert evaluation["checkpoint"] == str(ckpt / "best.pt")

    missing = tmp_path / "nowhere" / "step-00000001.pt"
    code, out, err = train(second, "--validate-only", "--checkpoint", str(missing))
    assert code == 2 and out == "" and str(missing) in err
    for wrong in (("--checkpoint", str(ckpt / "best.pt")), ("--validate-only", "--resume", "never")):
        code, out, err = train(second, *wrong)  # refused by the command line, before torch is imported
        assert code == 2 and err.startswith("crashguard train: --"), err[-500:]

    tensorboard = EventAccumulator(str(run_dir / "tensorboard"))
    tensorboard.Reload()
    tags = set(tensorboard.Tags()["scalars"])
    assert {"train/loss", "train/micro_batch", "train/ram_percent", "val/dice_mean", "val/dice_tc", "val/dice_wt",
            "val/dice_et", "val/best_dice_mean", "eval/dice_mean"} <= tags
    assert [e.step for e in tensorboard.Scalars("train/loss")] == list(range(1, 7))
    assert [round(e.value, 4) for e in tensorboard.Scalars("val/dice_mean")] == means
