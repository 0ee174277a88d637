"""`crashguard train --config PATH [--resume auto|never|PATH] [--run-name NAME] [--runs-dir DIR]`.

By default the trainer runs in a child process under a light supervisor (runs/supervisor.py) that records a
crash (e.g. SIGKILL by the OOM killer) in status.json. `--no-supervise` runs the trainer in this process
(what the supervisor's child does; also handy under a debugger).

Under torchrun (`torchrun --nproc_per_node N -m python_backend train --config ...`, RANK/WORLD_SIZE set) each
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
    parser.set_defaults(run=run)


def fail(message: str) -> int:
    print(f"crashguard train: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ..runs.status import valid_run_name
    from ..training.config import ConfigError, check_data_location, load_config

    try:
        config = load_config(args.config)
        check_data_location(config)
    except ConfigError as exc:
        return fail(f"{args.config}: {exc}")
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
        return supervise(trainer_command(argv), status_path(Path(runs_dir).resolve() / name))
    return _train(config, args.config, name, Path(runs_dir), args.resume, not args.no_progress)


def _under_torchrun() -> bool:
    # The same test as training.distributed.DistEnv.detect, without importing torch for the supervisor.
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _train(config: object, config_path: Path, name: str, runs_dir: Path, resume: str, progress: bool) -> int:
    from ..training.check import DataError
    from ..training.distributed import PeerLost, shutdown
    from ..training.run import EXIT_PEER_LOST, EXIT_REFUSED, RunPlace, RunRefused, execute, prepare

    place = RunPlace(runs_dir=runs_dir, name=name, config_path=config_path)
    try:
        try:
            trainer, resumed = prepare(config, place, resume=resume, progress=progress)  # type: ignore[arg-type]
        except (RunRefused, DataError) as exc:
            print(f"crashguard train: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except PeerLost as exc:  # another rank refused or died before the run registered
            print(f"crashguard train: {exc}", file=sys.stderr)
            return EXIT_PEER_LOST
        outcome = execute(trainer, resumed)
        print(f"crashguard train: {outcome.message}", file=sys.stderr)
        if trainer.coord.distributed:
            # The status and checkpoint are written. torchrun SIGTERMs every rank as soon as the first one exits,
            # which would kill a slow interpreter shutdown (-15 instead of our code): the ranks end together,
            # after a last agreement (skipped when a peer is gone), and leave at once with our own exit code.
            if outcome.exit_code != EXIT_PEER_LOST:
                with contextlib.suppress(Exception):
                    trainer.coord.agree(True)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(outcome.exit_code)
        return outcome.exit_code
    finally:
        shutdown()
