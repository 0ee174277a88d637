"""A stand-in training run for the sidecar tests: a real child Python that registers with RunHook, holds a large
allocation, takes a "step" every 0.1 s and honours control requests at step boundaries.

--hold gc:    the buffer sits in an unreachable reference cycle with the collector disabled (like a training
              loop's pending garbage); the hook's default cleanup (gc.collect) frees it.
--hold cache: the buffer sits in a cache; a custom cleanup callback drops it, then runs the default cleanup.
--hold pinned: the buffer is in use (a plain reference); no cleanup can free it.
--no-poll:    never reads control requests (a hung loop), so only SIGTERM can stop it.
--record-requests FILE: append every control request the hook is about to read to FILE (JSON lines), so a test
              sees what the sidecar sent (e.g. `urgent`).
--step-seconds S: the time a step takes (default 0.1).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time

from crashguard.guard.cleanup import CleanupReport, CleanupStep, emergency_cleanup
from crashguard.monitor.processes import own_rss
from crashguard.runs import RunHook, RunState

CACHE: list[bytearray] = []


class Garbage:
    buf: bytearray
    me: Garbage


def touched(n: int) -> bytearray:
    buf = bytearray(n)
    for i in range(0, n, 4096):  # touch every page so it counts in RSS
        buf[i] = 1
    return buf


def drop_cache() -> CleanupReport:
    before = own_rss()
    count = len(CACHE)
    CACHE.clear()
    report = emergency_cleanup()
    report.steps.insert(0, CleanupStep("drop cached batches", True, f"dropped {count} cached buffer(s)",
                                       freed=before - report.rss_before))
    report.rss_before = before
    return report


def record_requests(hook: RunHook, path: str) -> None:
    folder = hook.run_dir / "control"
    with open(path, "a", encoding="utf-8") as out:
        for request in sorted(folder.glob("*.json")):
            if not request.name.endswith(".done.json"):
                with contextlib.suppress(OSError):  # withdrawn by the sidecar meanwhile
                    out.write(request.read_text() + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--hold", choices=("gc", "cache", "pinned"), default="gc")
    parser.add_argument("--no-poll", action="store_true")
    parser.add_argument("--record-requests")
    parser.add_argument("--step-seconds", type=float, default=0.1)
    args = parser.parse_args()

    size = args.mb * 2**20
    if args.hold == "gc":
        gc.disable()
        garbage = Garbage()
        garbage.me = garbage  # a cycle: only the collector can free it
        garbage.buf = touched(size)
        del garbage
        hook = RunHook(args.name, runs_dir=args.runs_dir)
    elif args.hold == "cache":
        CACHE.append(touched(size))
        hook = RunHook(args.name, runs_dir=args.runs_dir, cleanup=drop_cache)
    else:
        pinned = touched(size)  # noqa: F841 - held for the life of the run
        hook = RunHook(args.name, runs_dir=args.runs_dir)
    hook.stop_on_signals()
    hook.start()
    step = 0
    while True:
        time.sleep(args.step_seconds)
        step += 1
        if args.record_requests:
            record_requests(hook, args.record_requests)
        if args.no_poll:
            hook.update(step=step, loss=1.0 / step)
        else:
            hook.step_boundary(step=step, loss=1.0 / step)
        if hook.stop_requested:
            checkpoint = hook.run_dir / "checkpoints" / f"step_{step}.json"
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(json.dumps({"step": step}))
            hook.finish(RunState.STOPPED, checkpoint=checkpoint)
            print(f"stopped at step {step}", file=sys.stderr)
            return 0


if __name__ == "__main__":
    sys.exit(main())
