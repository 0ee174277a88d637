"""`crashguard train --config PATH [--resume auto|never|PATH] [--run-name NAME] [--runs-dir DIR]
[--memory-max SIZE [--memory-high SIZE]] [--oom-score-adj N] [--validate-only [--checkpoint PATH]]`.

`--validate-only` trains nothing: it runs the training's guarded validation on one checkpoint of the run (its
best.pt, else its newest intact step checkpoint, or `--checkpoint PATH`) and prints one JSON line with the Dice
per region (training/evaluate.py).

By default the trainer runs in a child process under a light supervisor (runs/supervisor.py) that records a
crash (e.g. SIGKILL by the kernel's OOM killer, told apart from any other kill -9) in status.json.
`--no-supervise` runs the trainer in this process (what the supervisor's child does; also handy under a debugger).

`--memory-max` (or the config's memory.max_gb) starts the trainer in a memory cgroup of its own with that hard
limit and a high mark below it (runs/containment.py; docs/defences.md): the OOM killer then acts among the run's
processes only, and the trainer cleans up, backs off and checkpoints-and-stops by itself over its high mark. The
trainer always volunteers to the OOM killer (`--oom-score-adj`, default the config's memory.oom_score_adj, 500).

Under torchrun (`torchrun --nproc_per_node N --no-python crashguard train --config ...`, RANK/WORLD_SIZE set) each
rank trains in its own process and torchrun is the supervisor: no supervisor of ours is started (see
docs/distributed.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config's module is imported at run time only when a command needs it
    from ..training.config import TrainingConfig

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="safe MONAI training (OOM back-off, checkpoints, control)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="training config JSON")
    parser.add_argument("--resume", default="auto", metavar="auto|never|PATH",
                        help="auto (default): continue from the newest intact checkpoint of this run, if any; "
                        "never: start fresh (refused if the run has checkpoints); or a checkpoint file")
    parser.add_argument("--run-name", help="run folder name (default: the config's name)")
    parser.add_argument("--runs-dir", type=Path, help="runs folder (default: the config's output_dir, 'runs')")
    parser.add_argument("--no-supervise", action="store_true",
                        help="run the trainer in this process instead of a supervised child")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--memory-max", metavar="SIZE", help="contain the trainer in a memory cgroup with this hard "
                        "limit, e.g. 12G (overrides memory.max_gb)")
    parser.add_argument("--memory-high", metavar="SIZE", help="the contained trainer's high mark, below "
                        "--memory-max (default 85%% of it; overrides memory.high_gb)")
    parser.add_argument("--oom-score-adj", type=int, metavar="N", help="the trainer's oom_score_adj, -1000..1000 "
                        "(raised, never lowered; overrides memory.oom_score_adj, default 500)")
    parser.add_argument("--validate-only", action="store_true", help="train nothing: validate a checkpoint of the "
                        "run and print its Dice (TC/WT/ET) as one JSON line; writes no checkpoint")
    parser.add_argument("--checkpoint", type=Path, metavar="PATH", help="with --validate-only: the checkpoint to "
                        "evaluate (default: the run's best.pt, else its newest intact checkpoint)")
    parser.set_defaults(run=run)


def fail(message: str) -> int:
    print(f"crashguard train: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ..runs.status import valid_run_name
    from ..training.config import ConfigError, check_data_location, check_extras, load_config

    if args.checkpoint is not None and not args.validate_only:
        return fail("--checkpoint goes with --validate-only (to continue training from a file: --resume PATH)")
    if args.validate_only and args.resume != "auto":
        return fail("--resume does not go with --validate-only (the checkpoint to evaluate: --checkpoint PATH)")
    if args.checkpoint is not None and not args.checkpoint.is_file():  # before the supervisor, torch and the data
        return fail(f"--checkpoint {args.checkpoint}: no such checkpoint file")
    try:
        config = load_config(args.config, warn=not _supervised())  # the supervisor has warned already
        check_data_location(config)
        check_extras(config)
    except ConfigError as exc:
        return fail(f"{args.config}: {exc}")
    try:
        config = _with_overrides(config, args)
    except ValueError as exc:
        return fail(str(exc))
    name = args.run_name or config.name
    if not valid_run_name(name):
        return fail(f"--run-name {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit "
                    "(it names a folder)")
    runs_dir = args.runs_dir or config.output_dir
    if not args.no_supervise and not _under_torchrun():
        from ..runs.status import status_path
        from ..runs.supervisor import supervise, trainer_command

        argv = ["-v"] if args.verbose else []
        argv += ["train", "--config", str(args.config), "--resume", args.resume, "--run-name", name,
                 "--runs-dir", str(runs_dir), "--no-supervise"]
        if args.no_progress:
            argv.append("--no-progress")
        if args.validate_only:
            argv.append("--validate-only")
        if args.checkpoint is not None:
            argv += ["--checkpoint", str(args.checkpoint)]
        if args.oom_score_adj is not None:
            argv += ["--oom-score-adj", str(args.oom_score_adj)]
        try:
            containment = _containment(config, name)
        except ValueError as exc:
            return fail(str(exc))
        return supervise(trainer_command(argv), status_path(Path(runs_dir).resolve() / name),
                         containment=containment, oom_score_adj=config.memory.oom_score_adj)  # type: ignore[arg-type]
    if config.memory.max_gb is not None and not _contained(config.memory.max_gb):
        print("crashguard train: containment unavailable: --memory-max needs the supervisor, which starts the "
              "trainer in its group (not with --no-supervise or under torchrun: contain the whole command, e.g. "
              "systemd-run --user --scope -p MemoryMax=... torchrun ...)", file=sys.stderr)
    if args.validate_only:  # the checkpoint to evaluate travels where the one to resume would
        chosen = "auto" if args.checkpoint is None else str(args.checkpoint)
        return _train(config, args.config, name, Path(runs_dir), chosen, not args.no_progress, evaluate=True)
    return _train(config, args.config, name, Path(runs_dir), args.resume, not args.no_progress)


def _contained(max_gb: float) -> bool:
    """Whether this process already is in a memory group with that hard limit (the supervisor's child is)."""
    from ..monitor.memcg import memcg_of, read_memcg

    group = memcg_of("self")
    reading = read_memcg(group) if group is not None else None
    return reading is not None and reading.max is not None and abs(reading.max - max_gb * 2**30) <= 2**20


def _with_overrides(config: TrainingConfig, args: argparse.Namespace) -> TrainingConfig:
    """The config with --memory-max/--memory-high/--oom-score-adj applied (validated like the file's values)."""
    from ..guard.oom_score import check_oom_score_adj
    from ..util.units import parse_size

    memory: dict[str, object] = {}
    sizes = (("--memory-max", "max_gb", args.memory_max), ("--memory-high", "high_gb", args.memory_high))
    for flag, key, text in sizes:
        if text is not None:
            try:
                memory[key] = parse_size(text) / 2**30
            except ValueError as exc:
                raise ValueError(f"{flag}: {exc}") from None
    if args.oom_score_adj is not None:
        memory["oom_score_adj"] = check_oom_score_adj(args.oom_score_adj, "--oom-score-adj")
    if not memory:
        return config
    merged = {**config.memory.model_dump(), **memory}
    high, top = merged["high_gb"], merged["max_gb"]
    if high is not None and (top is None or high >= top):
        raise ValueError(f"--memory-high must lie below --memory-max (or memory.max_gb), got {args.memory_high}")
    return config.model_copy(update={"memory": config.memory.model_copy(update=memory)})


def _containment(config: object, name: str) -> object:
    """The containment plan for the trainer, or None when none was asked for."""
    from ..runs.containment import plan, resolve_limits
    from ..training.config import TrainingConfig

    assert isinstance(config, TrainingConfig)
    mem = config.memory
    if mem.max_gb is None:
        return None
    top, high = resolve_limits(int(mem.max_gb * 2**30), int(mem.high_gb * 2**30) if mem.high_gb else None)
    return plan(top, high, name)


def _supervised() -> bool:
    """This process is the trainer a supervisor of ours started (runs/supervisor.py)."""
    from ..runs.supervisor import SUPERVISED_ENV

    return os.environ.get(SUPERVISED_ENV) == "1"


def _under_torchrun() -> bool:
    # The same test as training.distributed.DistEnv.detect, without importing torch for the supervisor.
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _train(config: object, config_path: Path, name: str, runs_dir: Path, resume: str, progress: bool,
           evaluate: bool = False) -> int:
    from ..runs.files import RefusedFile
    from ..runs.lock import RunLocked
    from ..step.distributed import PeerLost, shutdown
    from ..step.lifecycle import EXIT_PEER_LOST
    from ..training.check import DataError
    from ..training.evaluate import evaluate_checkpoint
    from ..training.run import EXIT_REFUSED, RunPlace, RunRefused, execute, prepare

    place = RunPlace(runs_dir=runs_dir, name=name, config_path=config_path)
    try:
        try:
            # A watchdog records a crash where no supervisor of ours does (--no-supervise by hand, torchrun).
            trainer, resumed = prepare(config, place, resume=resume, progress=progress,  # type: ignore[arg-type]
                                       evaluate=evaluate, watchdog=not _supervised())
        except (RunRefused, DataError, RefusedFile) as exc:  # RefusedFile: a planted link in the run folder
            print(f"crashguard train: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except PeerLost as exc:  # another rank refused or died before the run registered
            print(f"crashguard train: {exc}", file=sys.stderr)
            return EXIT_PEER_LOST
        if evaluate:
            assert resumed is not None  # prepare refuses an evaluation without a checkpoint
            exit_code = evaluate_checkpoint(trainer, resumed)
        else:
            try:
                outcome = execute(trainer, resumed)
            except (RefusedFile, RunLocked) as exc:  # refused at registration: nothing of the run was written
                print(f"crashguard train: {exc}", file=sys.stderr)
                return EXIT_REFUSED
            print(f"crashguard train: {outcome.message}", file=sys.stderr)
            exit_code = outcome.exit_code
        if trainer.coord.distributed:
            # The status and checkpoint are written. torchrun SIGTERMs every rank as soon as the first one exits,
            # which would kill a slow interpreter shutdown (-15 instead of our code): the ranks end together,
            # after a last agreement (skipped when a peer is gone), and leave at once with our own exit code.
            if exit_code != EXIT_PEER_LOST:
                with contextlib.suppress(Exception):
                    trainer.coord.agree(True)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(exit_code)
        return exit_code
    finally:
        shutdown()
