"""Precision (float16/bfloat16 autocast, GradScaler or not), the VRAM budget's fraction and a real bfloat16 run on
the CPU with clipping and a schedule: what the step records say."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from training_helpers import events, records

from crashguard.step.precision import resolve_precision
from crashguard.training.config import load_config
from crashguard.training.device_settings import GIB, apply_vram_budget, vram_fraction
from crashguard.training.run import RunPlace, execute, prepare


@pytest.mark.parametrize(("amp", "dtype", "device", "bf16", "expected"), [
    (False, "bfloat16", "cuda", True, (False, torch.float32, False, False)),
    (True, "float16", "cuda", True, (True, torch.float16, True, False)),
    (True, "bfloat16", "cuda", True, (True, torch.bfloat16, False, False)),
    (True, "bfloat16", "cuda", False, (True, torch.float16, True, True)),  # an old GPU: float16, said so
    (True, "float16", "cpu", False, (False, torch.float32, False, False)),  # as before: float16 on CUDA only
    (True, "bfloat16", "cpu", False, (True, torch.bfloat16, False, False)),  # asked for: allowed on the CPU
])
def test_what_amp_and_amp_dtype_mean_per_device(amp: bool, dtype: str, device: str, bf16: bool,
                                                 expected: tuple[bool, torch.dtype, bool, bool]) -> None:
    p = resolve_precision(amp, dtype, device, bf16_supported=bf16)
    assert (p.autocast, p.dtype, p.scaled, p.note is not None) == expected


def test_the_vram_budget_is_a_fraction_of_the_cards_total() -> None:
    assert vram_fraction(6.0, 24 * GIB) == pytest.approx(0.25)
    assert vram_fraction(7.5, 8 * GIB) == pytest.approx(0.9375)
    assert vram_fraction(80.0, 80 * GIB) is None and vram_fraction(100.0, 24 * GIB) is None  # no cap
    with pytest.raises(ValueError):
        vram_fraction(4.0, 0)


def test_the_vram_budget_is_a_logged_no_op_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    with caplog.at_level(logging.INFO, logger="crashguard.training.device_settings"):
        assert apply_vram_budget(6.0, torch.device("cpu"), lambda kind, message, fields: events.append(kind)) is None
    assert events == [] and [r.getMessage() for r in caplog.records] == [
        "memory.vram_budget_gb (6 GiB) has no effect on cpu"]


def test_a_bfloat16_cpu_run_with_clipping_and_a_schedule(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    torch.set_num_threads(1)
    train = {"roi_size": [16, 16, 16], "max_steps": 2, "amp": True, "amp_dtype": "bfloat16", "device": "cpu",
             "grad_clip_norm": 0.5, "lr_schedule": "poly", "warmup_steps": 2}
    config = load_config(write_config(train=train, memory={"vram_budget_gb": 4.0}))
    trainer, resumed = prepare(config, RunPlace(tmp_path / "runs", "bf16"), resume="never", progress=False)
    assert trainer.amp and trainer.precision.dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    dtypes: list[torch.dtype] = []
    trainer.net.register_forward_hook(lambda _m, _a, out: dtypes.append(out.dtype))
    assert execute(trainer, resumed).exit_code == 0
    steps = records(trainer.hook.run_dir, "step")
    assert [s["step"] for s in steps] == [1, 2] and all(math.isfinite(s["loss"]) for s in steps)
    assert [s["lr"] for s in steps] == [0.0015, 0.003]  # a warm-up of 2 steps to tiny_config's 0.003
    assert all(s["grad_norm"] > 0 for s in steps)  # the pre-clip norm, recorded because clipping is on
    assert dtypes and set(dtypes) == {torch.bfloat16}  # training steps and validation's windows alike
    assert not events(trainer.hook.run_dir, "vram_budget")  # CPU: no-op
