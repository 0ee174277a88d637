"""Safe inference: a trained checkpoint segments NIfTI inputs into dataset.json labels, in the input's grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from training_helpers import crashguard

from crashguard.training.inference import infer, label_map


def test_label_map_uses_dataset_numbering() -> None:
    mask = np.zeros((3, 4, 1, 1), dtype=bool)
    mask[1, :3] = True  # WT
    mask[0, 1:3] = True  # TC
    mask[2, 2] = True  # ET
    labels = label_map(mask, {"TC": [2, 3], "WT": [1, 2, 3], "ET": [3]})
    assert labels[:, 0, 0].tolist() == [1, 2, 3, 0]


@pytest.mark.slow
def test_infer_writes_segmentations(tmp_path: Path, data_root: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 2})
    assert crashguard("train", "--config", str(config), "--runs-dir", "runs", "--no-supervise",
                      cwd=tmp_path).returncode == 0
    checkpoint = sorted((tmp_path / "runs" / "tiny" / "checkpoints").glob("step-*.pt"))[-1]
    image = data_root / "Task01_BrainTumour" / "imagesTr" / "BRATS_001.nii.gz"
    result = crashguard("infer", "--checkpoint", str(checkpoint), "--input", str(image), "--out", "pred",
                        "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "pred" / "BRATS_001_seg.nii.gz"
    assert result.stdout.strip() == str(Path("pred") / "BRATS_001_seg.nii.gz")
    seg = nib.load(str(out))
    assert seg.shape == (32, 32, 32) and np.allclose(seg.affine, nib.load(str(image)).affine)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_infer_backs_off_the_window_batch(tmp_path: Path, data_root: Path,
                                          write_config: Callable[..., Path]) -> None:
    torch.set_num_threads(1)
    config = write_config(train={"epochs": 1})
    assert crashguard("train", "--config", str(config), "--runs-dir", "runs", "--no-supervise",
                      cwd=tmp_path).returncode == 0
    checkpoint = sorted((tmp_path / "runs" / "tiny" / "checkpoints").glob("step-*.pt"))[-1]
    events: list[str] = []

    def fail_big_windows(module: torch.nn.Module, args: tuple) -> None:
        if type(module).__name__ == "SegResNet" and args[0].shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected: no GPU here)")

    handle = torch.nn.modules.module.register_module_forward_pre_hook(fail_big_windows)
    try:
        written = infer(checkpoint, [data_root / "Task01_BrainTumour" / "imagesTr"], tmp_path / "out",
                        sw_batch_size=4, device=torch.device("cpu"), on_event=events.append)
    finally:
        handle.remove()
    assert len(written) == 12
    assert events == ["cuda_oom in sliding-window inference: sw_batch_size 4->2",
                      "cuda_oom in sliding-window inference: sw_batch_size 2->1"]
