"""A registered run whose C-level fork keeps the run's lock (issue 21, class 12): prints "ready <child pid>" and
sleeps; the test kill -9s it, and the child lives on holding the lock, as a child forked by C code does.

ctypes.PyDLL calls fork() without releasing the GIL and without Python's fork handlers, which is what a C
extension's fork() does: RunHook's handler that closes the lock in forked children never runs. `--ignore-term`:
the child ignores SIGTERM (only SIGKILL ends it). `--thread`: the child also starts a thread and prints its id.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time

from crashguard.runs import RunHook


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--thread", action="store_true")
    args = parser.parse_args()
    hook = RunHook(args.name, runs_dir=args.runs_dir)
    hook.start()
    read, write = os.pipe()
    pid = ctypes.PyDLL(None).fork()
    if pid == 0:  # the stray child: no Python fork handler ran, the lock's descriptor is still open here
        os.close(read)
        if args.ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        tid = 0
        if args.thread:
            ready = threading.Event()
            ids: list[int] = []

            def park() -> None:
                ids.append(threading.get_native_id())
                ready.set()
                time.sleep(600)

            threading.Thread(target=park, daemon=True).start()
            ready.wait()
            tid = ids[0]
        os.write(write, f"{tid}\n".encode())
        os.close(write)
        time.sleep(600)
        os._exit(0)
    os.close(write)
    tid = os.read(read, 64).decode().strip()
    print(f"ready {pid} {tid}", flush=True)
    time.sleep(600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
