"""An unregistered memory hog for the ladder's drills: grows by --step-mb every --every seconds (200 MiB/s by
default) up to --target bytes, holds it for --hold seconds, then leaves on its own (bounded and short, whatever
happens to the test). Every catchable signal it receives is appended to --signals, so a test can prove that
Crash Guard never signalled it (SIGKILL and SIGSTOP cannot be caught: check that it is still running, not stopped).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

HOG = Path(__file__).resolve()


def command(target: int, signals: Path, hold: float = 45.0) -> list[str]:
    return [sys.executable, str(HOG), "--target", str(target), "--signals", str(signals), "--hold", str(hold)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", type=int, required=True, help="bytes to hold at most")
    parser.add_argument("--signals", required=True, help="file that records every catchable signal received")
    parser.add_argument("--step-mb", type=int, default=50)
    parser.add_argument("--every", type=float, default=0.25)
    parser.add_argument("--hold", type=float, default=45.0)
    args = parser.parse_args()

    def note(signum: int, _frame: object) -> None:
        with open(args.signals, "a", encoding="utf-8") as out:
            out.write(f"{signum}\n")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, note)
    chunks, grown = [], 0
    while grown < args.target:
        chunk = bytearray(args.step_mb * 2**20)
        for i in range(0, len(chunk), 4096):  # touch every page so it counts
            chunk[i] = 1
        chunks.append(chunk)
        grown += len(chunk)
        time.sleep(args.every)
    time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
