"""Validation that survives: Dice scored where the logits are (after a CPU-stitch fallback the labels follow
them), post-processing OOM handled, the numbers MONAI's DiceMetric gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.metrics import DiceMetric

from crashguard.step.backoff import OutOfMemoryAtMinimum
from crashguard.training import validation
from crashguard.training.validation import guarded_region_dice, region_dice


def random_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((2, 3, 12, 10, 8), generator=generator)
    label = (torch.rand((2, 3, 12, 10, 8), generator=generator) > 0.6).to(torch.uint8)
    label[1, 2] = 0  # a case without the region: NaN, as DiceMetric's ignore_empty
    return logits, label


def test_region_dice_equals_monai_dice_metric() -> None:
    logits, label = random_case()
    metric = DiceMetric(include_background=True, reduction="none")
    expected = metric(y_pred=(torch.sigmoid(logits) > 0.5).float(), y=label.float())
    got = region_dice(logits, label)
    assert got.shape == (2, 3)
    assert torch.isnan(got[1, 2]) and torch.isnan(expected[1, 2])
    assert torch.allclose(got.nan_to_num(-1), expected.double().nan_to_num(-1), atol=1e-6)


def test_labels_follow_the_logits_device() -> None:
    """Logits on another device than the labels (the CPU-stitch case: logits on the CPU, labels where the model
    is) are scored on the logits' device. `meta` stands in for the second device on a machine without a GPU:
    scoring with the labels left on their own device raises the same device-mismatch error CUDA does."""
    logits, label = random_case()
    with pytest.raises(RuntimeError, match="device"):
        (logits.to("meta") > 0) & (label > 0)  # what scoring on mismatched devices does
    scored = region_dice(logits.to("meta"), label)
    assert scored.device.type == "meta" and scored.shape == (2, 3)


def test_validation_with_cpu_stitching_checks_every_device(tmp_path: Path, data_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Trainer validates with the sliding window forced to stitch on the CPU (the fallback's state after
    an OOM at sw_batch_size 1); at the metric, every tensor is on the logits' device."""
    from training_helpers import tiny_config

    from crashguard.runs.hook import RunHook
    from crashguard.training.config import parse_config
    from crashguard.training.data import load_monai_decathlon_safe
    from crashguard.training.loop import Trainer
    from crashguard.training.metrics import MetricsLog

    torch.set_num_threads(1)
    config = parse_config(json.dumps(tiny_config(data_root)))
    data = load_monai_decathlon_safe(data_root, batch_size=4, cache_rate=1.0, roi_size=(24, 24, 24))
    hook = RunHook("val", runs_dir=tmp_path / "runs")
    trainer = Trainer(config, data, hook, MetricsLog(tmp_path / "metrics.jsonl"), torch.device("cpu"),
                      progress=False)
    trainer.window.stitch_on_cpu = True
    seen: list[tuple[torch.device, torch.device]] = []
    real = validation.region_dice

    def checked(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        seen.append((logits.device, label.device))
        scored = real(logits, label)
        assert scored.device == logits.device
        return scored

    monkeypatch.setattr(validation, "region_dice", checked)
    dice = trainer.validate()
    assert len(seen) == 3 and all(d == torch.device("cpu") for pair in seen for d in pair)
    assert dice["mean"] is not None and set(dice) == {"mean", "TC", "WT", "ET"}


def test_post_processing_oom_on_the_cpu_stops_like_an_oom_at_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    logits, label = random_case()

    def out_of_memory(*_: object) -> torch.Tensor:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 4398046511104 bytes")

    monkeypatch.setattr(validation, "region_dice", out_of_memory)
    with pytest.raises(OutOfMemoryAtMinimum, match="validation post-processing"):
        guarded_region_dice(logits, label, lambda _: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_validation_after_the_cpu_stitch_fallback() -> None:
    """The real case: logits stitched on the CPU, labels on CUDA."""
    logits, label = random_case()
    scored = guarded_region_dice(logits, label.cuda(), lambda _: None)
    assert scored.device.type == "cpu"
    assert torch.allclose(scored.nan_to_num(-1), region_dice(logits, label).nan_to_num(-1))
