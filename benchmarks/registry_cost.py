"""`python -m benchmarks.registry_cost`: what proving registrations costs the sidecar per tick.

Side by side, interleaved on the same live runs: `verify` (pid + create time + user, all a status file could be
checked against before run locks) and `verify_run` (the same, plus the run folder opened checked, the lock file's
identity and its descriptor found in /proc/<pid>/fd), then a whole `Registry.scan()`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crashguard.runs.files import open_run_dir
from crashguard.runs.liveness import holds_file, verify, verify_run
from crashguard.runs.registry import Registry
from crashguard.util.json_io import json_text

# A registered run holding `fds` more open files, like a trainer with DataLoader pipes and mapped libraries.
_RUN = """
import sys, time
from crashguard.runs import RunHook
hook = RunHook(sys.argv[2], runs_dir=sys.argv[1])
hook.start()
files = [open("/dev/null") for _ in range(int(sys.argv[3]))]
print("ready", flush=True)
time.sleep(600)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.registry_cost",
                                     description="measure the cost of proving run registrations")
    parser.add_argument("--runs", type=int, default=4, help="registered runs (default 4)")
    parser.add_argument("--fds", type=int, default=500, help="extra open files in each run (default 500)")
    parser.add_argument("--rounds", type=int, default=500, help="rounds to time (default 500)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def _median_us(values: list[float]) -> float:
    return round(statistics.median(values) * 1e6, 1)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="crashguard-bench-registry-") as tmp:
        runs_dir = Path(tmp) / "runs"
        procs = [subprocess.Popen([sys.executable, "-c", _RUN, str(runs_dir), f"run{i}", str(args.fds)],
                                  stdout=subprocess.PIPE, text=True) for i in range(args.runs)]
        try:
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            registry = Registry(runs_dir)
            records = registry.scan()
            assert len(records) == args.runs and all(r.verdict.alive for r in records), records
            old: list[float] = []
            new: list[float] = []
            full_pass: list[float] = []
            scans: list[float] = []
            for _ in range(args.rounds):
                for record in records:
                    s = record.status
                    t0 = time.perf_counter()
                    verify(s.pid, s.create_time)
                    t1 = time.perf_counter()
                    with open_run_dir(runs_dir, record.name) as run_fd:
                        verify_run(run_fd, s)
                    t2 = time.perf_counter()
                    holds_file(s.pid, s.lock_dev or 0, s.lock_ino or 0)  # without the recorded descriptor
                    t3 = time.perf_counter()
                    old.append(t1 - t0)
                    new.append(t2 - t1)
                    full_pass.append(t3 - t2)
                t = time.perf_counter()
                registry.scan()
                scans.append(time.perf_counter() - t)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    figures = {"runs": args.runs, "extra_fds": args.fds, "rounds": args.rounds,
               "verify_us": _median_us(old), "verify_run_us": _median_us(new),
               "ratio": round(statistics.median(new) / statistics.median(old), 2),
               "fd_pass_without_hint_us": _median_us(full_pass), "scan_ms": round(_median_us(scans) / 1000, 3)}
    if args.json:
        print(json_text(figures))
    else:
        f = figures
        print(f"{f['runs']} live runs with {f['extra_fds']} extra open files each, medians of {f['rounds']} rounds:\n"
              f"  verify (pid + create time + user)      {f['verify_us']:8.1f} us per run\n"
              f"  verify_run (+ folder, lock, fd proof)  {f['verify_run_us']:8.1f} us per run  "
              f"(x{f['ratio']})\n"
              f"  a pass over every descriptor (no hint) {f['fd_pass_without_hint_us']:8.1f} us per run\n"
              f"  Registry.scan() of the whole folder    {f['scan_ms']:8.3f} ms")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
