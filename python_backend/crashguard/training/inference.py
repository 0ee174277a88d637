"""Safe inference: a checkpoint (loaded weights-only) + NIfTI inputs -> NIfTI label maps, with sw_batch back-off.

The output is in the input's voxel grid and affine (no resampling), labelled like dataset.json:
enhancing where ET, non-enhancing where TC but not ET, oedema where WT but not TC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, NormalizeIntensityd

from ..step.checkpoint import CheckpointError, load_checkpoint
from ..step.precision import precision_for
from ..util.volumes import load_volume
from .config import ModelConfig
from .model import build_model
from .sliding import WindowPlan, guarded_sliding_window

log = logging.getLogger(__name__)


def model_from_checkpoint(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, object]]:
    state = load_checkpoint(path)
    try:
        cfg = ModelConfig.model_validate_json(json.dumps(state["config"]["model"]))
        model = build_model(cfg)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not usable for inference ({type(exc).__name__}: {str(exc)[:120]})") \
            from None
    return model.to(device).eval(), state


def label_map(regions_mask: np.ndarray, regions: dict[str, list[int]]) -> np.ndarray:
    """[3 (TC, WT, ET), X, Y, Z] booleans -> dataset.json label values."""
    enhancing = regions["ET"][0]
    non_enhancing = next(v for v in regions["TC"] if v != enhancing)
    edema = next(v for v in regions["WT"] if v not in regions["TC"])
    tc, wt, et = regions_mask
    out = np.zeros(tc.shape, dtype=np.uint8)
    out[wt] = edema
    out[tc] = non_enhancing
    out[et] = enhancing
    return out


def input_files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir() if p.name.endswith((".nii", ".nii.gz"))))
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return files


def infer(checkpoint: Path, inputs: list[Path], out_dir: Path, sw_batch_size: int = 4, overlap: float = 0.25,
          device: torch.device | None = None, on_event: Callable[[str], None] = log.warning) -> list[Path]:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, state = model_from_checkpoint(checkpoint, device)
    config = state["config"]
    assert isinstance(config, dict)
    roi = tuple(config["train"]["roi_size"])
    # The training run's precision (checkpoints from before amp_dtype: float16).
    precision = precision_for(bool(config["train"]["amp"]), str(config["train"].get("amp_dtype", "float16")), device)
    regions = state.get("regions") or {"TC": [2, 3], "WT": [1, 2, 3], "ET": [3]}
    assert isinstance(regions, dict)
    preprocess = Compose([LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image"),
                          EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
                          NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True)])
    plan = WindowPlan(sw_batch_size=sw_batch_size, overlap=overlap)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in input_files(inputs):
        image = preprocess({"image": str(path)})["image"].unsqueeze(0).to(device)
        with torch.no_grad():
            logits = guarded_sliding_window(image, model, roi, plan, precision, on_event)
        mask = (torch.sigmoid(logits[0]) > 0.5).cpu().numpy()
        labels = label_map(mask, regions)
        target = out_dir / (path.name.removesuffix(".gz").removesuffix(".nii") + "_seg.nii.gz")
        nib.save(nib.Nifti1Image(labels, load_volume(path).affine), target)
        log.info("wrote %s (sw_batch_size %d)", target, plan.sw_batch_size)
        written.append(target)
    return written
