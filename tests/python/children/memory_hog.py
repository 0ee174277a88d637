"""An unregistered memory hog for the ladder's drills: grows by --step-mb every --every seconds (200 MiB/s by
default), or at --rate-mb MiB/s paced by the clock, up to --target bytes, holds it for --hold seconds, then leaves
on its own (bounded and short, whatever happens to the test). Every catchable signal it receives is appended to
--signals, so a test can prove that Crash Guard never signalled it (SIGKILL and SIGSTOP cannot be caught: check
that it is still running, not stopped). --reached FILE gets the wall-clock times it started growing and reached
its target ("<started> <reached>").
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

HOG = Path(__file__).resolve()


def command(target: int, signals: Path, hold: float = 45.0, rate_mb: int | None = None,
            reached: Path | None = None) -> list[str]:
    argv = [sys.executable, str(HOG), "--target", str(target), "--signals", str(signals), "--hold", str(hold)]
    if rate_mb is not None:
        argv += ["--rate-mb", str(rate_mb), "--step-mb", "16"]
    if reached is not None:
        argv += ["--reached", str(reached)]
    return argv


def touched(size: int) -> bytearray:
    """`size` bytes, every page written (so each counts as used), in C: a first touch costs the page fault."""
    chunk = bytearray(size)
    chunk[::4096] = b"\x01" * len(range(0, size, 4096))
    return chunk


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", type=int, required=True, help="bytes to hold at most")
    parser.add_argument("--signals", required=True, help="file that records every catchable signal received")
    parser.add_argument("--step-mb", type=int, default=50)
    parser.add_argument("--every", type=float, default=0.25)
    parser.add_argument("--hold", type=float, default=45.0)
    parser.add_argument("--rate-mb", type=float, help="grow at this many MiB/s, paced by the clock")
    parser.add_argument("--reached", help="file for '<started> <reached>' (wall-clock seconds)")
    args = parser.parse_args()

    def note(signum: int, _frame: object) -> None:
        with open(args.signals, "a", encoding="utf-8") as out:
            out.write(f"{signum}\n")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, note)
    chunks, grown = [], 0
    started, paced = time.time(), time.monotonic()
    while grown < args.target:
        chunks.append(touched(min(args.step_mb * 2**20, args.target - grown)))
        grown += len(chunks[-1])
        if args.rate_mb:
            time.sleep(max(0.0, paced + grown / (args.rate_mb * 2**20) - time.monotonic()))
        else:
            time.sleep(args.every)
    if args.reached:
        Path(args.reached).write_text(f"{started} {time.time()}\n")
    time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
