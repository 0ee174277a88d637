"""The best-model and early-stopping rule, best.pt beside pruning, the metrics rewind that redoes a validation,
the TensorBoard mapping and the check for its package (unit tests: no training)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from training_helpers import events, tiny_config

from crashguard.step.checkpoint import BEST_NAME, list_checkpoints, save_best, save_checkpoint
from crashguard.training import config as config_module
from crashguard.training.best import BestTracker
from crashguard.training.config import ConfigError, check_extras, parse_config
from crashguard.training.metrics import MetricsLog, read_metrics
from crashguard.training.tensorboard import scalars_of


def test_best_is_the_strict_maximum_and_patience_counts_gains_below_min_delta() -> None:
    tracker = BestTracker(patience=2, min_delta=0.05)
    seen = [(0.10, 1), (0.30, 2), (0.32, 3), (None, 4), (0.31, 5), (0.40, 6), (0.41, 7), (0.20, 8)]
    improved, stale, exhausted = [], [], []
    for metric, step in seen:
        improved.append(tracker.observe(metric, step))
        stale.append(tracker.stale)
        exhausted.append(tracker.exhausted)
    # 0.32 is a new best (best.pt follows it) but not a gain of more than 0.05: it counts against the patience.
    assert improved == [True, True, True, False, False, True, True, False]
    assert stale == [0, 0, 1, 1, 2, 0, 1, 2]  # a validation without a Dice (None) neither improves nor counts
    assert exhausted == [False, False, False, False, True, False, False, True]
    assert (tracker.metric, tracker.step) == (0.41, 7)
    assert tracker.describe_stop(8) == "early stop at step 8: no improvement in 2 validations, best 0.41 at step 7"
    assert not BestTracker(patience=None, stale=100).exhausted  # no patience: never stops


def test_tracker_state_survives_a_weights_only_checkpoint() -> None:
    tracker = BestTracker(patience=3, min_delta=0.0)
    for metric, step in [(0.5, 2), (0.4, 4), (0.45, 6)]:
        tracker.observe(metric, step)
    buffer = io.BytesIO()
    torch.save({"best": tracker.state()}, buffer)
    buffer.seek(0)
    restored = BestTracker(patience=3)
    restored.load(torch.load(buffer, weights_only=True)["best"])
    assert restored == tracker and (restored.metric, restored.step, restored.stale) == (0.5, 2, 2)
    fresh = BestTracker()
    fresh.load(None)  # a checkpoint from before this field: a fresh count
    assert fresh.metric is None and fresh.stale == 0


def test_best_pt_is_never_pruned(tmp_path: Path) -> None:
    save_best(tmp_path, {"model": {}, "step": 1, "best": {"metric": 0.5, "step": 1, "stale": 0}})
    (tmp_path / f".{BEST_NAME}.x1.tmp").write_bytes(b"torn")  # a killed write of best.pt
    for step in (2, 3, 4):
        save_checkpoint(tmp_path, {"model": {}, "step": step}, step, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{BEST_NAME}.x1.tmp", BEST_NAME, "step-00000004.pt"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004.pt"]  # resume never picks best.pt
    save_best(tmp_path, {"model": {}, "step": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST_NAME, "step-00000004.pt"]
    assert torch.load(tmp_path / BEST_NAME, weights_only=True)["step"] == 4


def test_rewind_redoes_the_validation_at_the_checkpoint_step(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write("step", step=4, loss=1.0)
    log.write("event", step=4, event="checkpoint")  # a run from before the event log kept its events here
    log.write("val", step=4, dice_mean=0.3)
    log.write("best", step=4, dice_mean=0.3)
    log.write("step", step=5, loss=0.9)
    log.close()
    with (tmp_path / "metrics.jsonl").open("a") as handle:  # hostile lines: no step, a step of the wrong type
        handle.write('{"type": "step"}\n{"type": "step", "step": "4"}\n[1]\n')
    log = MetricsLog(tmp_path / "metrics.jsonl")
    assert log.rewind(4, redo=("val", "best")) == 6
    log.close()
    kept = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["type"], r.get("event")) for r in kept] == [("step", None), ("event", "checkpoint")]


def test_tensorboard_scalars_of_the_records() -> None:
    step = {"type": "step", "time": 1.0, "step": 3, "epoch": 0, "loss": 0.5, "micro_batch": 2, "ram_percent": 40.0,
            "lr": 0.001, "world_size": 2}
    assert scalars_of(step) == {"train/loss": 0.5, "train/micro_batch": 2.0, "train/ram_percent": 40.0,
                                "train/lr": 0.001, "train/world_size": 2.0}
    val = {"type": "val", "step": 3, "epoch": 0, "dice_mean": 0.4, "dice_tc": 0.3, "dice_wt": 0.5, "dice_et": None}
    assert scalars_of(val) == {"val/dice_mean": 0.4, "val/dice_tc": 0.3, "val/dice_wt": 0.5}
    assert set(scalars_of({**val, "evaluation": True, "checkpoint": "x"})) == {"eval/dice_mean", "eval/dice_tc",
                                                                              "eval/dice_wt"}
    assert scalars_of({"type": "best", "step": 3, "dice_mean": 0.4}) == {"val/best_dice_mean": 0.4}
    assert scalars_of({"type": "event", "step": 3, "event": "checkpoint", "path": "p"}) == {}


def test_tensorboard_without_its_package_is_refused_by_name(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(json.dumps(tiny_config(data_root, logging={"tensorboard": True})))
    check_extras(config)  # installed here (the dev extra)
    monkeypatch.setattr(config_module, "installed", lambda package: False)
    with pytest.raises(ConfigError, match=r"^logging\.tensorboard: .*crashguard\[tensorboard\]"):
        check_extras(config)
    check_extras(parse_config(json.dumps(tiny_config(data_root))))  # off: nothing to check
    with pytest.raises(ConfigError, match=r"^train\.early_stopping_patience: "):
        parse_config(json.dumps(tiny_config(data_root, train={"early_stopping_patience": 0})))


def test_trainer_keeps_a_better_best_pt_and_stops_when_the_patience_is_spent(tmp_path: Path, data_root: Path) -> None:
    """A real Trainer in this process: a best.pt from an earlier attempt that is better than anything the resumed
    run measures is kept; without it the new best is written; a restored count with patience 1 ends the run at
    the next validation without a gain; the run's end then writes a checkpoint that holds the spent patience."""
    from crashguard.runs.hook import RunHook
    from crashguard.training.data import load_monai_decathlon_safe
    from crashguard.training.loop import Trainer

    torch.set_num_threads(1)
    config = parse_config(json.dumps(tiny_config(data_root, train={"roi_size": [16, 16, 16],
                                                                   "early_stopping_patience": 1})))
    data = load_monai_decathlon_safe(data_root, batch_size=4, cache_rate=0.0, roi_size=(16, 16, 16))
    trainer = Trainer(config, data, RunHook("best", runs_dir=tmp_path / "runs"),
                      MetricsLog(tmp_path / "metrics.jsonl"), torch.device("cpu"), progress=False)
    trainer.run.start()
    trainer.run.completed_steps = data.steps_per_epoch  # an epoch end, its validation after the checkpoint
    assert trainer.validation_pending
    trainer.best_on_disk = 1.0  # an earlier attempt's best.pt: no untrained model beats it
    assert trainer._validate_and_track() is None and not trainer.validation_pending
    assert not (trainer.checkpoint_dir / BEST_NAME).exists()
    measured = trainer.best.metric
    assert measured is not None and trainer.best.step == trainer.step

    trainer.best_on_disk = None
    trainer.best = BestTracker(patience=1)
    assert trainer._validate_and_track() is None  # the first validation is a gain
    saved = torch.load(trainer.checkpoint_dir / BEST_NAME, weights_only=True)
    assert saved["best"] == {"metric": measured, "step": trainer.step, "stale": 0}
    assert saved["step"] == trainer.step and saved["validated_at"] == trainer.step

    stopped = trainer._validate_and_track()  # the same model again: no gain, patience 1 spent
    assert stopped == f"early stop at step {trainer.step}: no improvement in 1 validations, best " \
        f"{measured} at step {trainer.step}"
    outcome = trainer.run.end(message=stopped)
    assert (outcome.state, outcome.exit_code, outcome.message) == ("finished", 0, stopped)
    assert outcome.checkpoint is not None
    assert torch.load(outcome.checkpoint, weights_only=True)["best"]["stale"] == 1
    kinds = [r["type"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert kinds == ["val", "val", "best", "val"]  # the learning record
    history = [r["event"] for r in events(trainer.hook.run_dir)]
    assert history == ["best_kept", "early_stop", "checkpoint", "finished"]  # what happened to the run
