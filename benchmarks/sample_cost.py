"""`python -m benchmarks.sample_cost`: the CPU cost of one full sample (RAM + swap + cgroup + RSS of a process tree)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from crashguard.monitor.gpu import GPUMonitor
from crashguard.monitor.host import MemoryMonitor
from crashguard.monitor.processes import tree_rss
from crashguard.util.json_io import json_text

_CHILD = "import time; time.sleep(600)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sample_cost",
                                     description="measure the CPU cost of one memory sample")
    parser.add_argument("--samples", type=int, default=2000, help="samples to time (default 2000)")
    parser.add_argument("--tree", type=int, default=6, help="processes in the measured tree (default 6)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def _spawn_tree(size: int) -> subprocess.Popen[bytes]:
    """A real process tree: one parent python with size-1 sleeping children (like DataLoader workers)."""
    script = (
        "import subprocess, sys, time\n"
        f"kids = [subprocess.Popen([sys.executable, '-c', {_CHILD!r}]) for _ in range({size - 1})]\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    assert parent.stdout is not None
    parent.stdout.readline()
    return parent


def run(args: argparse.Namespace) -> int:
    memory = MemoryMonitor()
    gpus = GPUMonitor()
    tree = _spawn_tree(args.tree)
    try:
        counted = tree_rss(tree.pid)
        assert counted is not None and counted.processes == args.tree, counted
        cpu_times: list[float] = []
        for _ in range(args.samples):
            start = time.process_time()
            memory.check_memory()  # RAM + swap + cgroup limit
            tree_rss(tree.pid)
            gpus.read()
            cpu_times.append(time.process_time() - start)
    finally:
        import os
        import signal

        os.killpg(tree.pid, signal.SIGKILL)
        tree.wait()
    mean_ms = statistics.fmean(cpu_times) * 1000
    figures = {
        "samples": args.samples,
        "tree_processes": args.tree,
        "cpu_ms_mean": round(mean_ms, 3),
        "cpu_ms_median": round(statistics.median(cpu_times) * 1000, 3),
        "cpu_ms_p95": round(sorted(cpu_times)[int(0.95 * len(cpu_times))] * 1000, 3),
        "core_percent_at_1hz": round(mean_ms / 10, 4),
    }
    if args.json:
        print(json_text(figures))
    else:
        print(f"one full sample (RAM + swap + cgroup + RSS of a {args.tree}-process tree + GPUs): "
              f"mean {figures['cpu_ms_mean']} ms CPU, median {figures['cpu_ms_median']} ms, "
              f"p95 {figures['cpu_ms_p95']} ms -> {figures['core_percent_at_1hz']} % of a core at 1 Hz")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
