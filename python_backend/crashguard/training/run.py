"""One training run from a config: checks, resume, registration, the loop, and how it ends.

Everything that can refuse the run (config, data, checkpoint to resume) is checked before the run registers
or writes a file. Exit codes: 0 finished/stopped, 2 refused (config, data, checkpoint), 3 out of memory at the
smallest batch, or stopped by itself at its memory cgroup's high mark (a checkpoint is written first), 4 another
rank of a torchrun world was lost (rank 0 writes a checkpoint of the last completed step first), 1 any other
failure. Every code but 2 is the run's `Outcome` from the one run lifecycle all front doors share
(step/lifecycle.py's GuardedRun), which this trainer runs on.

Under torchrun (RANK/WORLD_SIZE set) every rank runs this; rank 0 alone downloads and checks the data, picks
the checkpoint to resume and writes checkpoints and metrics, and tells the others (who wait without running into
the collectives' timeout, however long the download or the data check takes).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..guard.cleanup import emergency_cleanup
from ..monitor.peak import lifetime_peak_rss
from ..runs.hook import RunHook
from ..runs.resume import crashguard_command, resume_command
from ..step.checkpoint import CheckpointError, latest_intact, list_checkpoints, load_checkpoint
from ..step.distributed import Coordinator, NoDeviceForRank, coordinator_for
from ..step.lifecycle import EXIT_FAILED, Outcome
from ..step.notices import announced
from .check import DataError, read_dataset_json, refuse_bad_data
from .config import TrainingConfig
from .data import ensure_downloaded, load_monai_decathlon_safe
from .evaluate import EvaluationHook, resolve_evaluation
from .loop import Trainer, check_compatible, check_model, pick_device
from .memory_plan import MemoryPlan, measure_working_set, resolve_budget
from .metrics import MetricsLog
from .sample_data import write_sample_dataset
from .tensorboard import TensorBoardSink
from .transforms import region_labels

log = logging.getLogger(__name__)
EXIT_REFUSED = 2
T = TypeVar("T")
HEARTBEAT_S = 2.0  # how often rank 0 tells the waiting ranks that it is still working


def coordinator_env_present() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


class RunRefused(RuntimeError):
    """A run that must not start; str() is one line."""


@dataclass(frozen=True)
class RunPlace:
    runs_dir: Path
    name: str
    config_path: Path | None = None

    @property
    def run_dir(self) -> Path:
        return self.runs_dir.resolve() / self.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def resolve_resume(place: RunPlace, resume: str) -> tuple[Path, dict[str, Any]] | None:
    """'auto': the newest intact checkpoint, if any; 'never': refuse if there are some; else a path."""
    if resume == "auto":
        found = latest_intact(place.checkpoint_dir)
        if found is None and list_checkpoints(place.checkpoint_dir):
            raise RunRefused(f"no intact checkpoint in {place.checkpoint_dir} (all are damaged); "
                             "use --resume never with a new --run-name")
        return found
    if resume == "never":
        if list_checkpoints(place.checkpoint_dir):
            raise RunRefused(f"run '{place.name}' already has checkpoints in {place.checkpoint_dir}: "
                             "use --resume auto, or another --run-name")
        return None
    path = Path(resume)
    try:
        return path, load_checkpoint(path)
    except CheckpointError as exc:
        raise RunRefused(str(exc)) from None


class NullMetrics(MetricsLog):
    """Ranks other than 0 keep no metrics.jsonl (rank 0 writes the run's, with the global loss)."""

    def __init__(self) -> None:
        self.sink = None

    def write(self, kind: str, **fields: Any) -> None:
        pass

    def rewind(self, step: int, redo: tuple[str, ...] = ()) -> int:
        return 0

    def close(self) -> None:
        pass


def on_rank0(coord: Coordinator, fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 and give its result (or its refusal) to every rank.

    The others wait in short broadcasts that rank 0 answers every HEARTBEAT_S ("still working") while `fn` runs
    in a thread: a 7 GB download or a full data check takes far longer than a collective may wait.
    """
    if not coord.distributed:
        return fn()
    answer: tuple[str, Any] = ("working", None)
    if coord.is_main:
        done: list[tuple[str, Any]] = []

        def work() -> None:
            try:
                done.append(("ok", fn()))
            except (RunRefused, DataError) as exc:
                done.append((type(exc).__name__, str(exc)))
            except BaseException as exc:  # told to the others too, so that no rank waits forever
                done.append(("error", f"{type(exc).__name__}: {exc}"))

        worker = threading.Thread(target=work, name="rank0-work", daemon=True)
        worker.start()
        while True:
            worker.join(HEARTBEAT_S)
            answer = done[0] if done else ("working", None)
            coord.broadcast(answer)
            if done:
                break
    else:
        while answer[0] == "working":
            answer = coord.broadcast(answer)
    kind, value = answer
    if kind == "error":
        raise RuntimeError(f"rank 0: {value}")
    if kind == "RunRefused":
        raise RunRefused(value)
    if kind == "DataError":
        raise DataError(value)
    return value


def prepare(config: TrainingConfig, place: RunPlace, resume: str = "auto", progress: bool = True,
            evaluate: bool = False, watchdog: bool = False) -> tuple[Trainer, tuple[Path, dict[str, Any]] | None]:
    """Checks, data, model; the run, not registered yet. Raises RunRefused (or DataError) before writing anything.
    `watchdog`: the run starts one when it registers (no supervisor of ours records a crash).

    `evaluate`: for `--validate-only` (evaluate.py): `resume` names the checkpoint ("auto": best.pt, else the
    newest intact), which must fit the model only; its weights are loaded, nothing of its training state; the
    run is not registered (status.json stays the trained run's) and no case is cached (one pass reads each once).
    """
    if evaluate:
        config = config.model_copy(update={"data": config.data.model_copy(update={"cache_rate": 0.0})})
    data_cfg = config.data
    try:
        coord, rank_device = coordinator_for(config.train.device)
    except NoDeviceForRank as exc:
        raise RunRefused(str(exc)) from None
    if config.train.effective_batch % coord.world_size:
        coord.close()
        raise RunRefused(f"train.effective_batch {config.train.effective_batch} does not divide by the world size "
                         f"{coord.world_size} (each rank takes an equal share of every step)")

    def check_data() -> None:
        if data_cfg.download:  # once, by rank 0, under a file lock that other runs on this data folder share
            ensure_downloaded(data_cfg.root, data_cfg.task)
        elif not data_cfg.task_dir.is_dir() and data_cfg.synthetic_if_missing:
            log.info("writing the synthetic sample dataset to %s", data_cfg.task_dir)
            write_sample_dataset(data_cfg.task_dir)
        if data_cfg.check != "off":  # every run: a folder an earlier run left half-written is caught here
            count = refuse_bad_data(data_cfg.task_dir, data_cfg.check)
            log.info("data check (%s): %d cases OK", data_cfg.check, count)

    def pick_checkpoint() -> tuple[Path, dict[str, Any]] | None:
        if evaluate:
            try:
                found: tuple[Path, dict[str, Any]] | None = resolve_evaluation(place.checkpoint_dir, resume)
            except CheckpointError as exc:
                raise RunRefused(str(exc)) from None
        else:
            found = resolve_resume(place, resume)
        if found is not None:
            try:
                (check_model if evaluate else check_compatible)(config, found[1])
            except CheckpointError as exc:
                raise RunRefused(f"{found[0]}: {exc}") from None
        return found

    on_rank0(coord, check_data)  # a shared data folder (multi-node: a shared filesystem) is checked once
    if not coord.distributed:
        resumed = pick_checkpoint()
    else:  # rank 0 picks; every rank loads that file (multi-node: the runs folder must be shared)
        picked: list[tuple[Path, dict[str, Any]] | None] = [None]

        def pick_path() -> Path | None:
            picked[0] = pick_checkpoint()
            return None if picked[0] is None else picked[0][0]

        path = on_rank0(coord, pick_path)
        try:
            resumed = picked[0] if coord.is_main else (path, load_checkpoint(path)) if path is not None else None
        except CheckpointError as exc:
            raise RunRefused(f"rank {coord.rank}: {exc}") from None
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = rank_device or pick_device(config.train.device)
    memory = plan_memory(config, device, coord) if data_cfg.cache_rate == "auto" else None
    if memory is not None:
        log.info("%s", memory.describe())
    train = config.train
    data = load_monai_decathlon_safe(
        data_cfg.root, data_cfg.task, batch_size=train.effective_batch, cache_rate=data_cfg.cache_rate,
        roi_size=train.roi_size, workers=data_cfg.resolved_workers(), val_fraction=data_cfg.val_fraction,
        seed=train.seed, download=False, ram_headroom_gb=config.memory.ram_headroom_gb,
        rank=coord.rank, world_size=coord.world_size, local_world_size=coord.local_world_size,
        crop_to_brain=data_cfg.crop_to_brain, crop=train.crop, foreground_ratio=train.foreground_ratio,
        cache_budget_bytes=memory.cache_bytes if memory is not None else None)
    data.memory = memory
    # A training run volunteers to the OOM killer through its lifecycle (which gives the score back at its end);
    # an evaluation, which has none, through its hook.
    hook = (EvaluationHook if evaluate else RunHook)(
        place.name, runs_dir=place.runs_dir, config=place.config_path, rank=coord.rank,
        world_size=coord.world_size, cleanup=announced(emergency_cleanup),
        oom_score_adj=config.memory.oom_score_adj if evaluate else None)
    hook.status.resume_command = train_resume_command(place)
    sink = TensorBoardSink(place.run_dir / "tensorboard") if config.logging.tensorboard else None
    metrics = MetricsLog(place.run_dir / "metrics.jsonl", sink) if coord.is_main else NullMetrics()
    trainer = Trainer(config, data, hook, metrics, device, progress=progress, coord=coord,
                      watchdog=watchdog and not evaluate)
    if resumed is not None and evaluate:
        trainer.load_weights(resumed[1])
    elif resumed is not None:
        trainer.load_state(resumed[1])
    return trainer, resumed


def plan_memory(config: TrainingConfig, device: torch.device, coord: Coordinator) -> MemoryPlan:
    """The RAM budget, the working set measured on the first training case, and what is left for the cache."""
    task_dir = config.data.task_dir
    meta = read_dataset_json(task_dir)
    first = meta["training"][0]
    entry = {key: str(task_dir / first[key].removeprefix("./")) for key in ("image", "label")}
    working = measure_working_set(config, region_labels(meta["labels"]), entry, device)
    workers = config.data.resolved_workers()
    budget = resolve_budget(config, coord.local_world_size)
    return MemoryPlan(budget, working, working.peak(load_threads=max(1, workers), concurrent_loads=workers))


def train_resume_command(place: RunPlace) -> dict[str, Any] | None:
    """`crashguard train` of this run with --resume auto, isolated from the run's folder (runs/resume.py; under
    torchrun: the torchrun command, likewise)."""
    if coordinator_env_present():
        return resume_command(["--resume", "auto"])
    argv = [*crashguard_command(), "train"]
    if place.config_path is not None:
        argv += ["--config", str(Path(place.config_path).resolve())]
    argv += ["--run-name", place.name, "--runs-dir", str(place.runs_dir.resolve()), "--resume", "auto"]
    return resume_command(argv=argv)


def execute(trainer: Trainer, resumed: tuple[Path, dict[str, Any]] | None) -> Outcome:
    """Register, train, and end the run in its one terminal state (the run's `end`: status.json, the checkpoint,
    the event). An unexpected exception is re-raised after the run recorded it (exit code 1)."""
    run = trainer.run
    run.start()
    # Keep the history up to the checkpoint; a fresh start (even after a run that died before its first
    # checkpoint) starts an empty file.
    redo = ("val", "best") if resumed is not None and trainer.validation_pending else ()
    dropped = trainer.metrics.rewind(trainer.step if resumed is not None else -1, redo)
    run.hook.update(step=trainer.step, micro_batch=trainer.plan.micro, accumulation=trainer.plan.accumulation)
    if resumed is not None:
        run.resumed(resumed[0], f" (micro-batch {trainer.plan.micro}); dropped {dropped} metric lines of the "
                    "interrupted attempt")
    else:
        world = (f" over {trainer.coord.world_size} ranks ({trainer.plan.effective} each)"
                 if trainer.coord.distributed else "")
        run.event("start", f"started: {trainer.total_steps} steps, effective batch "
                  f"{trainer.config.train.effective_batch}{world}, "
                  f"micro-batch {trainer.plan.micro}, device {trainer.device.type}, "
                  f"{trainer.data.cache.describe()}, workers {trainer.data.workers}"
                  + (f"; {trainer.data.memory.describe()}" if trainer.data.memory else ""))
    try:
        message = trainer.fit()
    except BaseException as exc:
        outcome = run.end(exc)
        trainer.metrics.close()
        if outcome.exit_code == EXIT_FAILED:
            raise
        return outcome
    _record_peak(trainer)
    outcome = run.end(message=message)
    trainer.metrics.close()
    return outcome


def _record_peak(trainer: Trainer) -> None:
    """The process's peak RSS over the whole run (kernel high-water mark) beside the budget it was planned for."""
    peak = lifetime_peak_rss()
    plan = trainer.data.memory
    fields: dict[str, Any] = {"peak_rss": peak, **(plan.as_fields() if plan else {})}
    share = f" = {peak / plan.budget:.0%} of the budget {plan.budget / 2**20:.0f} MiB" if plan and peak else ""
    message = f"peak RSS {peak / 2**20:.0f} MiB{share}" if peak else "peak RSS unknown"
    trainer.run.event("memory", message, notify=False, **fields)
