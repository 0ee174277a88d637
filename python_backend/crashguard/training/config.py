"""The training config as a typed model: loaded strictly, validated before anything is written.

`load_config(path)` returns a `TrainingConfig` or raises `ConfigError` whose message is one line naming the
field and the problem. Relative paths (data.root, output_dir) are relative to the working directory, which is
the workspace folder when VS Code runs the training.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..runs.status import valid_run_name

TASK: Final = "Task01_BrainTumour"
DEPRECATION_NOTES = "deprecation_notes"  # the validation context's list that collects them
DEFAULT_DATA_ROOT = Path("data")


class ConfigError(ValueError):
    """A config the trainer refuses; str() is one line: `<field>: <problem>`."""


class _Strict(BaseModel):
    # strict: "2" is not an int; forbid: a typo'd key is an error, not a silently ignored setting.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class DataConfig(_Strict):
    root: Path = Field(DEFAULT_DATA_ROOT, description="Folder that holds the task folder (e.g. data/).")
    task: Literal["Task01_BrainTumour"] = Field(TASK, description="Medical Segmentation Decathlon task.")
    download: bool = Field(False, description="Download the task with MONAI's DecathlonDataset if it is missing "
                           "(about 7 GB; needs a network).")
    synthetic_if_missing: bool = Field(False, description="Write the small synthetic dataset (crashguard "
                                       "sample-data) if the task folder is missing.")
    val_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="Share of the training cases held out.")
    cache_rate: float | Literal["auto"] = Field("auto", description="Share of cases cached in RAM after the "
                                                "deterministic transforms, or 'auto': as many as memory.ram_budget_gb "
                                                "leaves after the measured working set.")
    crop_to_brain: bool = Field(True, description="Crop each case to the brain's bounding box (non-zero voxels) "
                                "before caching: real Task01 volumes are mostly air.")
    workers: int | Literal["auto"] = Field("auto", description="DataLoader workers (threads: never copies "
                                           "of the cache); 'auto' = min(2, cpus // 4).")
    check: Literal["full", "fast", "off"] = Field("full", description="Data check before training: 'full' reads "
                                                  "every file, 'fast' reads headers and labels only.")

    @field_validator("cache_rate")
    @classmethod
    def _rate_range(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError("must lie between 0 and 1, or be 'auto'")
        return value

    @field_validator("workers")
    @classmethod
    def _workers_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be >= 0 or 'auto'")
        return value

    @property
    def task_dir(self) -> Path:
        return self.root / self.task

    def resolved_workers(self) -> int:
        if self.workers == "auto":
            return min(2, (os.cpu_count() or 1) // 4)
        return int(self.workers)


class ModelConfig(_Strict):
    name: Literal["segresnet", "unet"] = Field("segresnet", description="MONAI network.")
    init_filters: int = Field(8, ge=1, le=128, description="Channels of the first level; doubled per level.")
    levels: int = Field(4, ge=2, le=6, description="Resolution levels (the ROI must divide by 2**(levels-1)).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @property
    def divisor(self) -> int:
        return 2 ** (self.levels - 1)


class TrainConfig(_Strict):
    roi_size: tuple[int, int, int] = Field((48, 48, 48), description="Random crop size for training and the "
                                           "sliding window for validation/inference, in voxels.")
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps in total.")
    effective_batch: int = Field(4, ge=1, description="Samples per optimizer step; kept through OOM back-off.")
    micro_batch: int = Field(2, ge=1, description="Starting samples per forward pass (halved on OOM).")
    loss: Literal["dice_ce", "dice_focal", "dice"] = Field("dice_ce", description="Dice + binary cross-entropy "
                                                            "(default), Dice + focal, or plain Dice (the original "
                                                            "recipe) over the TC/WT/ET channels.")
    crop: Literal["foreground", "uniform"] = Field("foreground", description="Training crops: 'foreground' centres "
                                                   "a share foreground_ratio of them on tumour (nnU-Net-like), "
                                                   "'uniform' anywhere.")
    foreground_ratio: float = Field(0.33, ge=0.0, le=1.0, description="Share of crops centred on a tumour voxel "
                                    "(crop: foreground).")
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    amp: bool = Field(True, description="Mixed precision: autocast to amp_dtype (float16: on CUDA only).")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default).")
    val_every_epochs: int = Field(1, ge=1)
    val_at_start: bool = Field(False, description="Validate the untrained model first (a Dice baseline).")
    early_stopping_patience: int | None = Field(None, ge=1, description="End the run (state finished, with a "
                                                "checkpoint) after this many validations in a row without a mean "
                                                "Dice better than the best by more than early_stopping_min_delta; "
                                                "null: never stop early.")
    early_stopping_min_delta: float = Field(0.0, ge=0.0, le=1.0, description="How much a validation's mean Dice "
                                            "must beat the best by to count as an improvement for early stopping.")
    sw_batch_size: int = Field(2, ge=1, description="Sliding-window batch for validation (halved on OOM).")
    sw_overlap: float = Field(0.25, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0)
    # Learning rate, clipping, precision (schedule.py, guarded_step.py, precision.py).
    lr_schedule: Literal["constant", "cosine", "poly"] = Field("constant", description="Learning rate after the "
                                                               "warm-up: 'constant', 'cosine' (half a cosine down "
                                                               "to min_lr) or 'poly' (nnU-Net's (1 - t)^0.9 down "
                                                               "to min_lr), over the run's total steps.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up of the learning rate over the first N optimizer "
                              "steps (0: none).")
    min_lr: float = Field(0.0, ge=0.0, description="The learning rate that 'cosine' and 'poly' decay to; at most "
                          "learning_rate.")
    grad_clip_norm: float | None = Field(None, gt=0.0, description="Clip the total gradient norm (after "
                                         "accumulation, AMP unscaling and the all-reduce) to this; null: no "
                                         "clipping.")
    amp_dtype: Literal["float16", "bfloat16"] = Field("float16", description="Autocast dtype when amp is on: "
                                                      "'float16' (CUDA only, with a GradScaler) or 'bfloat16' "
                                                      "(no GradScaler; on GPUs that compute in it natively, "
                                                      "else float16; on the CPU too).")
    cudnn_benchmark: bool = Field(False, description="Let cuDNN time its convolution algorithms and pick the "
                                  "fastest (CUDA; faster, not bit-reproducible).")

    @field_validator("min_lr")
    @classmethod
    def _floor_below_rate(cls, value: float, info: ValidationInfo) -> float:
        rate = info.data.get("learning_rate")
        if rate is not None and value > rate:
            raise ValueError(f"must not exceed learning_rate ({rate}), got {value}")
        return value

    @field_validator("roi_size")
    @classmethod
    def _roi_positive(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(v < 1 for v in value):
            raise ValueError(f"every size must be positive, got {list(value)}")
        return value


class CheckpointConfig(_Strict):
    every_steps: int | None = Field(10, ge=1, description="Write a checkpoint every N optimizer steps (null: only by "
                                    "time).")
    every_minutes: float | None = Field(10.0, gt=0, le=10080, description="Also write one every M minutes of "
                                        "training (null: only by steps), whichever falls due first: a kill -9 or "
                                        "the kernel's OOM killer costs at most this much work. Periodic "
                                        "checkpoints are written in the background.")
    keep: int = Field(3, ge=1, description="Keep the last K checkpoints.")


class LoggingConfig(_Strict):
    tensorboard: bool = Field(False, description="Also write the metrics as TensorBoard scalars to "
                              "<run>/tensorboard/ (needs the 'tensorboard' extra: pip install "
                              "'crashguard[tensorboard]'); metrics.jsonl stays the record.")


# Old names of the trainer's RAM thresholds: they read like the editor's crashGuard.ramWarningPercent /
# ramCriticalPercent (the monitor's warnings and ladder), a different knob in another unit. Still accepted.
RENAMED_MEMORY_FIELDS = {"ram_warning": "log_ram_fraction", "ram_critical": "backoff_ram_fraction"}


def _fraction_not_percent(value: float) -> float:
    if value > 1.0:
        raise ValueError(f"a fraction of the machine's RAM in (0, 1], not a percent: e.g. 0.9 for 90%, got {value}")
    return value


def _deprecated_properties(schema: dict[str, Any]) -> None:
    """The old names in the editor's schema too, marked deprecated: a config from before stays valid there."""
    for old, new in RENAMED_MEMORY_FIELDS.items():
        schema["properties"][old] = {"deprecated": True, "type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0,
                                     "description": f"Deprecated: the old name of {new}."}


class MemoryConfig(_Strict):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, json_schema_extra=_deprecated_properties)

    # The trainer's own reaction to the machine's RAM between steps (step/memory_watch.py), not the editor's
    # thresholds: fractions, not percents, and named for what they do.
    log_ram_fraction: float = Field(
        0.80, gt=0.0, json_schema_extra={"maximum": 1.0},
        description="Share of the machine's RAM (0-1] at which the trainer records a ram_warning event in its event "
        "log (at most once a minute). The trainer's own knob, not the editor's crashGuard.ramWarningPercent. Was "
        "memory.ram_warning.")
    backoff_ram_fraction: float = Field(
        0.90, gt=0.0, json_schema_extra={"maximum": 1.0},
        description="Share of the machine's RAM (0-1] at which the trainer runs its cleanup between steps and, if "
        "still at or over it, halves its micro-batch before an out-of-memory. The trainer's own knob, not the "
        "editor's crashGuard.ramCriticalPercent. Was memory.ram_critical.")
    ram_budget_gb: float | Literal["auto"] = Field("auto", description="Peak RSS the whole training process may "
                                                   "reach (cache + working set); 'auto': available RAM at start "
                                                   "minus ram_headroom_gb.")
    ram_headroom_gb: float = Field(2.0, ge=0.0, description="RAM left free when ram_budget_gb is 'auto'.")
    max_gb: float | None = Field(None, gt=0.0, description="Contain the trainer in a memory cgroup of its own with "
                                 "this hard limit (the kernel's OOM killer acts there, among the run's processes "
                                 "only); null: no containment. `crashguard train --memory-max` overrides it.")
    high_gb: float | None = Field(None, gt=0.0, description="The contained trainer's high mark, below max_gb: "
                                  "over it the trainer cleans up, backs off, then checkpoints and stops by itself; "
                                  "null: 85% of max_gb.")
    vram_budget_gb: float | None = Field(None, gt=0.0, description="The most VRAM (GiB) this training process's "
                                         "CUDA allocator may reserve on its GPU (set_per_process_memory_fraction "
                                         "of the card's total), so the OOM back-off acts before a shared GPU is "
                                         "full; null: the whole card. No effect on the CPU.")
    oom_score_adj: int | None = Field(500, ge=-1000, le=1000, description="The trainer volunteers to the kernel's "
                                      "OOM killer with this oom_score_adj (raised, never lowered), so the editor "
                                      "is not the one killed; null: leave the score alone.")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any, info: ValidationInfo) -> Any:
        """memory.ram_warning / ram_critical: read as the new fields, with a note for the caller to show."""
        if not isinstance(data, dict) or not RENAMED_MEMORY_FIELDS.keys() & data.keys():
            return data
        data = dict(data)
        for old, new in RENAMED_MEMORY_FIELDS.items():
            if old not in data:
                continue
            if new in data:
                raise ValueError(f"{old} is the old name of {new}: give only {new}")
            data[new] = data.pop(old)
            notes = (info.context or {}).get(DEPRECATION_NOTES)
            if isinstance(notes, list):
                notes.append(f"memory.{old} is deprecated: rename it to memory.{new} (same meaning, a fraction "
                             "of the machine's RAM)")
        return data

    @field_validator("log_ram_fraction", "backoff_ram_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        return _fraction_not_percent(value)

    @field_validator("ram_budget_gb")
    @classmethod
    def _budget_positive(cls, value: float | str) -> float | str:
        if isinstance(value, float) and value <= 0:
            raise ValueError("must be positive, or 'auto'")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> MemoryConfig:
        if self.log_ram_fraction > self.backoff_ram_fraction:
            raise ValueError(f"log_ram_fraction ({self.log_ram_fraction}) must not exceed backoff_ram_fraction "
                             f"({self.backoff_ram_fraction})")
        if self.high_gb is not None and (self.max_gb is None or self.high_gb >= self.max_gb):
            raise ValueError(f"high_gb ({self.high_gb}) must lie below max_gb ({self.max_gb})")
        return self


class TrainingConfig(_Strict):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True,
                              title="Crash Guard safe training config")

    schema_ref: str | None = Field(None, alias="$schema", description="Editor hint; ignored.")
    name: str = Field("brats-safe", description="Default run name (runs/<name>/).")
    output_dir: Path = Field(Path("runs"), description="Default runs directory.")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    memory: MemoryConfig = MemoryConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not valid_run_name(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (it names a folder)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        divisor = self.model.divisor
        roi = self.train.roi_size
        if any(v % divisor or v < divisor for v in roi):
            raise ValueError(f"train.roi_size {list(roi)} is impossible for {self.model.name} with "
                             f"{self.model.levels} levels: every size must be a multiple of {divisor}")
        if self.model.name == "segresnet" and self.model.init_filters % 8:
            raise ValueError(f"model.init_filters must be a multiple of 8 for segresnet (its group norm uses 8 "
                             f"groups), got {self.model.init_filters}")
        if self.train.micro_batch > self.train.effective_batch:
            raise ValueError(f"train.micro_batch must not exceed train.effective_batch "
                             f"({self.train.effective_batch}), got {self.train.micro_batch}")
        return self


def _field_of(loc: tuple[int | str, ...]) -> str:
    # pydantic puts union members / validator names into loc ("float", "literal['auto']"): drop them.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in {"float", "int", "str"}))]
    return ".".join(parts) or "config"


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    field = _field_of(first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{field}: unknown key"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] not in {"value_error", "assertion_error"} and "input" in first:
        message += f" (got {json.dumps(first['input'], default=str)[:60]})"
    head, _, rest = message.partition(" ")
    if field == "config" and "." in head and rest:  # a cross-field check names its field first
        field, message = head, rest
    return f"{field}: {message}"


def parse_config(text: str, notes: list[str] | None = None) -> TrainingConfig:
    """The config in `text`; ConfigError names the field. `notes` collects deprecation notes (old field names)."""
    try:
        return TrainingConfig.model_validate_json(text, context={DEPRECATION_NOTES: notes if notes is not None
                                                                 else []})
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise ConfigError(f"not valid JSON: {exc.errors()[0]['msg']}") from None
        raise ConfigError(_one_line(exc)) from None


def load_config(path: str | Path, warn: bool = True) -> TrainingConfig:
    """The config file at `path`. `warn`: a one-line warning on stderr for each deprecated field name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    notes: list[str] = []
    config = parse_config(text, notes)
    if warn:
        for note in notes:
            print(f"crashguard: {path}: {note}", file=sys.stderr)
    return config


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_extras(config: TrainingConfig) -> None:
    """Optional packages the config asks for must be installed (checked before anything is written)."""
    if config.logging.tensorboard and not installed("tensorboard"):
        raise ConfigError("logging.tensorboard: the tensorboard package is not installed (pip install "
                          "'crashguard[tensorboard]', or set it to false)")


def check_data_location(config: TrainingConfig) -> None:
    """The data folder must exist unless the config asks for it to be downloaded or generated."""
    task_dir = config.data.task_dir
    if task_dir.is_dir():
        if not (task_dir / "dataset.json").is_file():
            raise ConfigError(f"data.root: {task_dir} has no dataset.json (not a Decathlon task folder)")
        return
    if config.data.download or config.data.synthetic_if_missing:
        return
    raise ConfigError(f"data.root: {task_dir} does not exist (run `crashguard sample-data --out {task_dir}` "
                      "or set data.download: true)")
