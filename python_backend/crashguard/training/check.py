"""Check a Decathlon task folder before training: unreadable files, shape/affine mismatches, unexpected labels.

Plain nibabel + numpy (no torch), so `crashguard check-data` starts fast. 'full' decodes every image and
label once (catches truncated files); 'fast' reads image headers and decodes labels only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..util.volumes import load_volume


@dataclass(frozen=True)
class Problem:
    file: str  # relative to the task folder
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class DataError(RuntimeError):
    """Data the trainer refuses; str() is one line naming the files."""


def read_dataset_json(task_dir: Path) -> dict[str, Any]:
    path = task_dir / "dataset.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable dataset.json ({exc})") from None
    for key in ("labels", "modality", "training"):
        if key not in data:
            raise DataError(f"{path}: dataset.json lacks the '{key}' key")
    return data


def _load(path: Path, full: bool) -> tuple[tuple[int, ...], np.ndarray, np.ndarray | None]:
    img = load_volume(path)
    data = np.asanyarray(img.dataobj) if full else None
    return tuple(int(s) for s in img.shape), np.asarray(img.affine), data


def check_case(task_dir: Path, entry: dict[str, str], channels: int, labels: set[int],
               full: bool) -> list[Problem]:
    problems: list[Problem] = []
    image_rel, label_rel = entry["image"].removeprefix("./"), entry["label"].removeprefix("./")
    image = label = None
    try:
        image = _load(task_dir / image_rel, full)
    except Exception as exc:  # nibabel raises many types for a damaged file
        problems.append(Problem(image_rel, f"unreadable ({type(exc).__name__}: {str(exc)[:80]})"))
    try:
        label = _load(task_dir / label_rel, True)
    except Exception as exc:
        problems.append(Problem(label_rel, f"unreadable ({type(exc).__name__}: {str(exc)[:80]})"))
    if image is not None:
        shape = image[0]
        if len(shape) != 4 or shape[3] != channels:
            problems.append(Problem(image_rel, f"shape {list(shape)}, expected 3D x {channels} channels"))
        if image[2] is not None and not np.isfinite(image[2]).all():
            problems.append(Problem(image_rel, "contains NaN or infinite values"))
    if label is not None:
        if len(label[0]) != 3:
            problems.append(Problem(label_rel, f"shape {list(label[0])}, expected a 3D label map"))
        assert label[2] is not None
        found = {int(v) for v in np.unique(label[2])}
        unexpected = sorted(found - labels)
        if unexpected:
            problems.append(Problem(label_rel, f"unexpected labels {unexpected} (dataset.json has "
                                    f"{sorted(labels)})"))
    if image is not None and label is not None:
        if image[0][:3] != label[0][:3]:
            problems.append(Problem(label_rel, f"shape {list(label[0][:3])} does not match the image's "
                                    f"{list(image[0][:3])}"))
        if not np.allclose(image[1], label[1], atol=1e-3):
            problems.append(Problem(label_rel, "affine does not match the image's"))
    return problems


def check_dataset(task_dir: Path, mode: Literal["full", "fast"] = "full") -> tuple[int, list[Problem]]:
    """(number of cases, problems) for every training case listed in dataset.json."""
    meta = read_dataset_json(task_dir)
    labels = {int(k) for k in meta["labels"]}
    channels = len(meta["modality"])
    problems: list[Problem] = []
    for entry in meta["training"]:
        problems.extend(check_case(task_dir, entry, channels, labels, full=mode == "full"))
    return len(meta["training"]), problems


def refuse_bad_data(task_dir: Path, mode: Literal["full", "fast"]) -> int:
    """Raise DataError (one line, naming the files) if any case is bad; return the number of cases."""
    count, problems = check_dataset(task_dir, mode)
    if problems:
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (+{len(problems) - 5} more; run crashguard check-data)" if len(problems) > 5 else ""
        raise DataError(f"bad data in {task_dir}: {shown}{more}")
    return count
