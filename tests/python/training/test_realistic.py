"""Realistic cases (MNI152 anatomy at Task01's size) and the recipe on them: the layout, tumour size and
position, foreground-aware crops that find the tumour, and a short real run whose loss falls within its RAM
budget. The full comparison with the original recipe is `make bench` (benchmarks/recipe_realistic.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from training_helpers import crashguard, events, records, tiny_config

from crashguard.training.realistic import make_realistic_case, write_realistic_dataset
from crashguard.training.transforms import deterministic_transforms, random_transforms, region_labels

LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}


@pytest.fixture(scope="module")
def realistic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("realistic")
    write_realistic_dataset(root / "Task01_BrainTumour", cases=2, seed=3, jobs=1)
    return root


@pytest.mark.slow
def test_cases_have_task01_size_and_realistic_tumours(realistic_root: Path) -> None:
    task = realistic_root / "Task01_BrainTumour"
    meta = json.loads((task / "dataset.json").read_text())
    assert meta["labels"] == LABELS and meta["numTraining"] == 2 and meta["tensorImageSize"] == "4D"
    image = nib.load(str(task / "imagesTr" / "BRATS_001.nii.gz"))
    assert image.shape == (240, 240, 155, 4) and np.allclose(image.header.get_zooms(), 1.0)
    data = np.asanyarray(image.dataobj)
    label = np.asarray(nib.load(str(task / "labelsTr" / "BRATS_001.nii.gz")).dataobj)
    brain = (data > 0).any(-1)
    assert 1.2e6 < brain.sum() < 2.2e6  # ~1.5-1.9 l of brain at 1 mm
    assert set(np.unique(label)) == {0, 1, 2, 3}
    tumour = label > 0
    assert 0.015 <= tumour.sum() / brain.sum() <= 0.09  # a few percent of the brain
    assert not (tumour & ~brain).any()
    centre = np.argwhere(tumour).mean(0)
    assert abs(centre[0] - 120) > 8  # in a hemisphere, not on the midline
    core = np.isin(label, (2, 3))
    assert 0.2 < core.sum() / tumour.sum() < 0.65
    flair, t1gd = data[..., 0], data[..., 2]
    assert flair[label == 1].mean() > 1.2 * flair[brain & ~tumour].mean()  # oedema bright on FLAIR
    assert t1gd[label == 3].mean() > 1.2 * t1gd[brain & ~tumour].mean()  # the rim enhances


@pytest.mark.slow
def test_cases_do_not_depend_on_the_job_count() -> None:
    first, _ = make_realistic_case(seed=5, index=1)
    again, _ = make_realistic_case(seed=5, index=1)
    assert np.array_equal(first, again)


def test_foreground_crops_find_the_tumour(realistic_root: Path) -> None:
    task = realistic_root / "Task01_BrainTumour"
    roi = (32, 32, 32)
    item = deterministic_transforms(region_labels(LABELS), roi)(
        {"image": str(task / "imagesTr/BRATS_001.nii.gz"), "label": str(task / "labelsTr/BRATS_001.nii.gz")})
    assert item["label"].dtype == torch.uint8 and item["image"].shape[1:] == item["label"].shape[1:]
    assert item["image"].shape[1] < 200 and item["image"].shape[2] < 220  # cropped to the brain (z: it fills 155)
    shares, fractions = {}, {}
    for crop in ("foreground", "uniform"):
        transform = random_transforms(roi, crop)
        transform.set_random_state(seed=0)
        with_tumour, tumour_voxels = 0, 0.0
        for _ in range(60):
            sample = transform(dict(item))
            sample = sample[0] if isinstance(sample, list) else sample
            whole = sample["label"][1]  # WT
            with_tumour += bool(whole.any())
            tumour_voxels += float(whole.float().mean())
        shares[crop], fractions[crop] = with_tumour / 60, tumour_voxels / 60
    print("crops with tumour:", shares, "tumour share of the crops' voxels:", fractions)
    assert shares["foreground"] >= 0.3  # a third of the crops are centred on tumour, by construction
    # Uniform crops touch the large oedema often (measured 0.32 of 60), but hold far less of it.
    assert fractions["foreground"] > 1.5 * fractions["uniform"]


@pytest.mark.slow
def test_loss_falls_on_two_realistic_cases_within_the_ram_budget(tmp_path: Path, realistic_root: Path) -> None:
    """One case trains (16 steps of one 32³ crop), the other validates."""
    config = tiny_config(realistic_root, data={"root": str(realistic_root), "cache_rate": "auto",
                                               "val_fraction": 0.5, "check": "fast"},
                         train={"roi_size": [32, 32, 32], "epochs": 16, "effective_batch": 1, "micro_batch": 1,
                                "val_every_epochs": 16, "sw_batch_size": 4, "learning_rate": 0.01},
                         checkpoint={"every_steps": 16, "keep": 1}, memory={"ram_budget_gb": 2.5})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = crashguard("train", "--config", str(path), "--runs-dir", "runs", "--run-name", "real",
                        "--no-supervise", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "real"
    losses = [r["loss"] for r in records(run_dir, "step")]
    print("losses:", losses)
    assert len(losses) == 16
    # Crops alternate between tumour-centred (lower loss) and background ones, so compare the trend, not two steps:
    # measured 1.57 -> 1.45 over 16 steps at this learning rate (a flat or rising loss fails both checks).
    assert np.polyfit(np.arange(16), losses, 1)[0] < 0
    assert np.mean(losses[-4:]) < 0.95 * np.mean(losses[:4])
    memory = events(run_dir, "memory")[0]
    assert memory["ram_budget"] == int(2.5 * 2**30)
    assert memory["working_set"] > memory["baseline_rss"] and memory["cache_budget"] > 0
    assert memory["peak_rss"] <= memory["ram_budget"]
    val = records(run_dir, "val")[-1]
    assert val["dice_wt"] is not None
