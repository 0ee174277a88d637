"""Data: the synthetic layout, the data check, refusing bad data, TC/WT/ET from dataset.json, the cache plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from training_helpers import crashguard, tiny_config

from crashguard.training.check import check_dataset
from crashguard.training.data import plan_cache
from crashguard.training.transforms import region_labels


@pytest.fixture
def damaged_root(tmp_path: Path, data_root: Path) -> Path:
    """A copy of the dataset with one truncated image, one label with value 4, one shifted affine."""
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    task = root / "Task01_BrainTumour"
    image = task / "imagesTr" / "BRATS_002.nii.gz"
    image.write_bytes(image.read_bytes()[:5000])
    label_path = task / "labelsTr" / "BRATS_005.nii.gz"
    label = nib.load(str(label_path))
    values = np.asarray(label.dataobj).copy()
    values[values == 3] = 4  # BraTS numbering sneaking into an MSD dataset
    nib.save(nib.Nifti1Image(values, label.affine), str(label_path))
    shifted = task / "labelsTr" / "BRATS_007.nii.gz"
    moved = nib.load(str(shifted))
    affine = moved.affine.copy()
    affine[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(moved.dataobj), affine), str(shifted))
    return root


def test_sample_data_has_the_msd_layout(data_root: Path) -> None:
    task = data_root / "Task01_BrainTumour"
    meta = json.loads((task / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    assert meta["tensorImageSize"] == "4D" and len(meta["modality"]) == 4 and meta["numTraining"] == 12
    image = nib.load(str(task / meta["training"][0]["image"]))
    label = np.asarray(nib.load(str(task / meta["training"][0]["label"])).dataobj)
    assert image.shape == (32, 32, 32, 4)
    assert set(np.unique(label)) == {0, 1, 2, 3}  # every region is present: a model can learn all three


def test_regions_follow_dataset_json_not_brats_numbering() -> None:
    msd = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    assert region_labels(msd) == {"TC": (2, 3), "WT": (1, 2, 3), "ET": (3,)}
    shuffled = {"0": "background", "1": "enhancing tumour", "2": "edema", "3": "non-enhancing tumor"}
    assert region_labels(shuffled) == {"TC": (3, 1), "WT": (2, 3, 1), "ET": (1,)}
    with pytest.raises(ValueError):
        region_labels({"0": "background", "1": "tumour"})


def test_clean_data_passes(data_root: Path) -> None:
    assert check_dataset(data_root / "Task01_BrainTumour") == (12, [])


def test_check_finds_each_damaged_file(damaged_root: Path) -> None:
    count, problems = check_dataset(damaged_root / "Task01_BrainTumour")
    found = {p.file: p.message for p in problems}
    assert count == 12
    assert "unreadable" in found["imagesTr/BRATS_002.nii.gz"]
    assert "unexpected labels [4]" in found["labelsTr/BRATS_005.nii.gz"]
    assert "affine" in found["labelsTr/BRATS_007.nii.gz"]
    assert len(problems) == 3


def test_check_data_cli_lists_problems(tmp_path: Path, damaged_root: Path) -> None:
    result = crashguard("check-data", "--task-dir", str(damaged_root / "Task01_BrainTumour"), cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stdout.strip().splitlines()) == 3
    assert "BRATS_002" in result.stdout and "BRATS_005" in result.stdout


@pytest.mark.slow
def test_train_refuses_bad_data_with_file_names(tmp_path: Path, damaged_root: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(damaged_root)))
    result = crashguard("train", "--config", str(config), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("crashguard train: bad data in")
    assert "imagesTr/BRATS_002.nii.gz: unreadable" in last
    assert "labelsTr/BRATS_005.nii.gz: unexpected labels [4]" in last
    assert not (tmp_path / "runs" / "tiny").exists()


def test_cache_auto_fits_the_budget() -> None:
    mib = 2**20
    plan = plan_cache("auto", item_bytes=10 * mib, n_train=9, n_val=3, headroom_bytes=100 * mib,
                      available_bytes=170 * mib)
    assert plan.cached_items == 7 and plan.train_rate == pytest.approx(7 / 9) and plan.val_rate == 0.0
    roomy = plan_cache("auto", item_bytes=mib, n_train=9, n_val=3, headroom_bytes=0, available_bytes=100 * mib)
    assert roomy.train_rate == 1.0 and roomy.val_rate == 1.0
    none = plan_cache("auto", item_bytes=mib, n_train=9, n_val=3, headroom_bytes=200 * mib,
                      available_bytes=100 * mib)
    assert none.cached_items == 0
    fixed = plan_cache(0.5, item_bytes=0, n_train=8, n_val=4, headroom_bytes=0)
    assert fixed.train_rate == 0.5 and fixed.budget_bytes is None


def test_loader_is_reproducible_mid_epoch(data_root: Path) -> None:
    import torch

    from crashguard.training.data import load_monai_decathlon_safe

    torch.set_num_threads(1)
    data = load_monai_decathlon_safe(data_root, batch_size=3, cache_rate="auto", roi_size=(16, 16, 16))
    assert data.cache.train_rate == 1.0 and data.steps_per_epoch == 3
    data.start_epoch(1)
    full = [b["image"].clone() for b in data.train_loader]
    data.start_epoch(1, batches_done=1)  # a resume after the first step of epoch 1
    resumed = [b["image"].clone() for b in data.train_loader]
    assert len(resumed) == 2
    assert all(torch.equal(a, b) for a, b in zip(full[1:], resumed, strict=True))
    data.start_epoch(2)
    assert not torch.equal(next(iter(data.train_loader))["image"], full[0])  # a new epoch, new samples


def test_download_fails_clearly_offline(tmp_path: Path) -> None:
    from crashguard.training.check import DataError
    from crashguard.training.data import ensure_downloaded

    # Only the error path is exercised (the archive is 7 GB): a local port that refuses connections stands in
    # for "no network", so the test never starts a real download even where a network exists.
    with pytest.raises(DataError, match=r"could not download Task01_BrainTumour .* \(no network\?"):
        ensure_downloaded(tmp_path, "Task01_BrainTumour", url="http://127.0.0.1:9/Task01_BrainTumour.tar")


def test_workers_are_threads_sharing_the_cache(data_root: Path) -> None:
    """Worker processes would each end up with a copy of the cache (MONAI #5930); threads share it."""
    import torch
    from monai.data import ThreadDataLoader

    from crashguard.training.data import load_monai_decathlon_safe

    torch.set_num_threads(1)
    threaded = load_monai_decathlon_safe(data_root, batch_size=3, cache_rate=1.0, roi_size=(16, 16, 16), workers=2)
    single = load_monai_decathlon_safe(data_root, batch_size=3, cache_rate=1.0, roi_size=(16, 16, 16), workers=0)
    assert isinstance(threaded.train_loader, ThreadDataLoader) and threaded.train_loader.num_workers == 2
    assert type(threaded.train_loader.multiprocessing_context).__name__ == "_ProcessThreadContext"  # not fork
    threaded.start_epoch(0)
    single.start_epoch(0)
    for a, b in zip(threaded.train_loader, single.train_loader, strict=True):
        assert torch.equal(a["image"], b["image"])  # same samples whatever the worker count
