"""A registered trainer that leaks: the stand-in for a training run heading for the kernel's OOM killer.

It registers with RunHook (so it volunteers to the OOM killer with the hook's default oom_score_adj, unless
--oom-score-adj none), takes a step every --step-seconds, grows by --grow-mb per step up to --max-mb (counted in
this process: a fresh process after a resume starts small again), writes a checkpoint (a JSON file with its step)
every --checkpoint-every steps, resumes from its newest checkpoint with --resume, and finishes after --steps.
Every step it takes is appended to --steps-log, so a test sees exactly where a resumed run continued. With
--go-file it grows only once that file exists (a test lets it grow when the sidecar has seen it alive).
Bounded whatever happens: it finishes on its own after --steps steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from crashguard.runs import RunHook, RunState
from crashguard.util.json_io import write_json_atomic

HOG_TRAINER = Path(__file__).resolve()


def command(runs_dir: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, str(HOG_TRAINER), "--runs-dir", str(runs_dir), "--name", name, *extra]


def touched(mb: int) -> bytearray:
    buf = bytearray(mb * 2**20)
    for i in range(0, len(buf), 4096):  # every page, so it is charged (RSS), not just reserved
        buf[i] = 1
    return buf


def latest_checkpoint(folder: Path) -> tuple[int, Path] | None:
    found = sorted((int(p.stem.split("-")[1]), p) for p in folder.glob("step-*.json"))
    return found[-1] if found else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--step-seconds", type=float, default=0.1)
    parser.add_argument("--grow-mb", type=int, default=8)
    parser.add_argument("--max-mb", type=int, default=10_000)
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--oom-score-adj", default="default", help="an integer, 'none', or 'default' (the hook's)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--steps-log")
    parser.add_argument("--go-file")
    args = parser.parse_args()

    kwargs = {}
    if args.oom_score_adj != "default":
        kwargs["oom_score_adj"] = None if args.oom_score_adj == "none" else int(args.oom_score_adj)
    hook = RunHook(args.name, runs_dir=args.runs_dir, **kwargs)
    checkpoints = hook.run_dir / "checkpoints"
    step = 0
    if args.resume:
        found = latest_checkpoint(checkpoints)
        if found is not None:
            step = json.loads(found[1].read_text())["step"]
    hook.stop_on_signals()
    hook.start()
    hook.update(step=step)
    held: list[bytearray] = []
    grown = 0
    while step < args.steps:
        time.sleep(args.step_seconds)
        if grown < args.max_mb and (args.go_file is None or os.path.exists(args.go_file)):
            held.append(touched(args.grow_mb))
            grown += args.grow_mb
        step += 1
        if args.steps_log:
            with open(args.steps_log, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()} {step}\n")
        if step % args.checkpoint_every == 0:
            checkpoints.mkdir(exist_ok=True)
            path = checkpoints / f"step-{step:06d}.json"
            write_json_atomic(path, {"step": step})
            hook.event(f"checkpoint at step {step}", checkpoint=str(path))
        hook.step_boundary(step=step, loss=1.0 / step)
        if hook.stop_requested:
            hook.finish(RunState.STOPPED, checkpoint=hook.status.checkpoint)
            return 0
    hook.finish(RunState.FINISHED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
