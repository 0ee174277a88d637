"""The MONAI handler says at start what a set-up silently lacks: no `iteration_update=handler.iteration` (no
back-off), no ResumableSampler (a resume would restart the epoch's data); with both, it says nothing."""

from __future__ import annotations

import warnings
from pathlib import Path

import integration_helpers  # noqa: F401  (puts examples/ on sys.path)
import pytest
import torch

pytest.importorskip("monai")

from monai.engines import SupervisedTrainer
from tiny3d import LOSS, SyntheticVolumes, build_model

from crashguard.monai import CrashGuardHandler, ResumableSampler
from crashguard.step.notices import CrashGuardWarning


def train(tmp_path: Path, guarded_iteration: bool, resumable: bool) -> list[str]:
    dataset = SyntheticVolumes(8)
    sampler = ResumableSampler(dataset) if resumable else None
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, sampler=sampler, shuffle=not resumable)
    model = build_model()
    handler = CrashGuardHandler("warned", runs_dir=tmp_path / "runs", watchdog=False, handle_signals=False)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=model,
                                optimizer=torch.optim.SGD(model.parameters(), lr=0.1), loss_function=LOSS,
                                iteration_update=handler.iteration if guarded_iteration else None,
                                train_handlers=[handler], epoch_length=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.run()
    return [str(w.message) for w in caught if issubclass(w.category, CrashGuardWarning)]


def test_a_handler_without_its_iteration_or_a_resumable_sampler_says_so(tmp_path: Path) -> None:
    said = train(tmp_path, guarded_iteration=False, resumable=False)
    assert len(said) == 2
    assert any("iteration_update=handler.iteration" in s and "not backed off" in s for s in said)
    assert any("ResumableSampler" in s and "restarts the interrupted epoch's data" in s for s in said)


def test_a_complete_set_up_says_nothing(tmp_path: Path) -> None:
    assert train(tmp_path, guarded_iteration=True, resumable=True) == []


def test_a_sampler_position_of_another_dataset_is_refused() -> None:
    sampler = ResumableSampler(16, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sampler.load_state_dict({**sampler.state_dict(), "seed": 1})
    with pytest.raises(ValueError, match="out of range"):
        sampler.load_state_dict({**sampler.state_dict(), "consumed": 17})
    sampler.load_state_dict({**sampler.state_dict(), "epoch": 2, "consumed": 12})
    assert list(sampler) == sampler.order(2)[12:] and list(sampler) == sampler.order(2)  # only the first is cut
