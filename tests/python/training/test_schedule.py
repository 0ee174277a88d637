"""The learning-rate schedule: a pure function of the step index (warm-up, cosine, poly), and a resumed run that
sets exactly the rates of the uninterrupted one."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from training_helpers import records

from crashguard.training.config import load_config
from crashguard.training.run import RunPlace, execute, prepare
from crashguard.training.schedule import lr_at


def test_warm_up_is_a_linear_ramp_that_never_starts_at_zero() -> None:
    rates = [lr_at(s, base_lr=1.0, total_steps=100, schedule="constant", warmup_steps=4) for s in range(6)]
    assert rates == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_runs_from_the_base_rate_down_to_min_lr_over_the_run() -> None:
    def cos(step: int) -> float:
        return lr_at(step, base_lr=1e-3, total_steps=110, schedule="cosine", warmup_steps=10, min_lr=1e-5)

    rates = [cos(s) for s in range(110)]
    assert rates[9] == pytest.approx(1e-3) and rates[10] == pytest.approx(1e-3)  # end of warm-up, decay's start
    assert cos(60) == pytest.approx((1e-3 + 1e-5) / 2)  # half-way: the cosine's midpoint
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert 1e-5 < rates[-1] < 1.03e-5  # the last step still learns a little; from total_steps on, min_lr
    assert cos(110) == cos(500) == 1e-5


def test_poly_is_nnunets_exponent_0_9() -> None:
    assert lr_at(0, base_lr=0.01, total_steps=1000, schedule="poly") == 0.01
    assert lr_at(500, base_lr=0.01, total_steps=1000, schedule="poly") == pytest.approx(0.01 * 0.5**0.9)
    assert lr_at(999, base_lr=0.01, total_steps=1000, schedule="poly") == pytest.approx(0.01 * 0.001**0.9)
    assert lr_at(1000, base_lr=0.01, total_steps=1000, schedule="poly", min_lr=1e-4) == 1e-4
    assert math.isclose(lr_at(5, base_lr=1.0, total_steps=4, schedule="poly", warmup_steps=8), 6 / 8)


def test_a_resumed_run_uses_exactly_the_rates_of_the_uninterrupted_one(tmp_path: Path,
                                                                       write_config: Callable[..., Path]) -> None:
    torch.set_num_threads(1)
    train = {"roi_size": [16, 16, 16], "epochs": 2, "lr_schedule": "cosine", "warmup_steps": 2,
             "min_lr": 0.0001}
    config = load_config(write_config(train=train, checkpoint={"every_steps": 2, "keep": 5}))
    whole, fresh = prepare(config, RunPlace(tmp_path / "runs", "whole"), resume="never", progress=False)
    assert execute(whole, fresh).exit_code == 0
    rates = [(r["step"], r["lr"]) for r in records(whole.hook.run_dir, "step")]
    total = whole.total_steps
    assert [s for s, _ in rates] == list(range(1, total + 1)) and total >= 4
    assert [lr for _, lr in rates] == [whole.lr_for(s - 1) for s, _ in rates]
    assert rates[0][1] == pytest.approx(0.0015) and rates[1][1] == pytest.approx(0.003)  # warm-up of tiny's 0.003

    # A second run from the whole run's checkpoint at step 2 sets the rates the whole run had from step 3 on.
    resumed, found = prepare(config, RunPlace(tmp_path / "runs", "resumed"),
                             resume=str(whole.checkpoint_dir / "step-00000002.pt"), progress=False)
    assert found is not None and resumed.step == 2
    assert execute(resumed, found).exit_code == 0
    again = [(r["step"], r["lr"]) for r in records(resumed.hook.run_dir, "step")]
    assert again == rates[2:]
