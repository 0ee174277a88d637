"""What the memory-guard pytest plugin costs on a real suite that nobody here wrote: nibabel's own test_nifti1 and
test_analyze (661 tests, installed with nibabel, run with --pyargs).

usage: python benchmarks/pytest_plugin_overhead.py [--repeats 3] [--json OUT]

Three ways, interleaved in the same run (plain, guard, every, plain, guard, every, ...), each in a fresh pytest
process started from an empty folder (so no project's pytest settings apply):
- plain: no plugin;
- guard: `--memory-guard` as shipped (exact peaks, cleanup only after a test that grew past the threshold);
- every: `--memory-guard --memory-cleanup-threshold=0`, a full cleanup after every test (the first version).
Prints the median of pytest's own time and of the wall time for each, and the ratios to plain (goal: guard <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = ["nibabel.tests.test_nifti1", "nibabel.tests.test_analyze"]
WAYS = {
    "plain": ["-p", "no:crashguard"],
    "guard": ["--memory-guard"],
    "every": ["--memory-guard", "--memory-cleanup-threshold=0"],
}
_PYTEST_TIME = re.compile(r" in ([0-9.]+)s")
_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|xfailed|error)")


def run_once(way: str, folder: Path) -> dict[str, float | int]:
    command = [sys.executable, "-m", "pytest", "--pyargs", *SUITE, "-q", "-p", "no:cacheprovider", *WAYS[way]]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    found = _PYTEST_TIME.search(last)
    counts = {kind: int(n) for n, kind in _COUNTS.findall(last)}
    if done.returncode != 0 or found is None or counts.get("failed") or counts.get("error"):
        raise SystemExit(f"{way}: pytest failed (exit {done.returncode}): {last}\n{done.stderr[-2000:]}")
    return {"pytest_s": float(found.group(1)), "wall_s": wall, "tests": sum(counts.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float | int]]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="crashguard-plugin-bench-") as scratch:
        for _ in range(args.repeats):
            for way in WAYS:
                runs[way].append(run_once(way, Path(scratch)))
    medians = {way: {key: statistics.median(float(r[key]) for r in found) for key in ("pytest_s", "wall_s")}
               for way, found in runs.items()}
    tests = int(runs["plain"][0]["tests"])
    print(f"nibabel {' + '.join(s.rsplit('.', 1)[1] for s in SUITE)}: {tests} tests, median of {args.repeats} "
          f"interleaved runs")
    print("| way | pytest time | wall time | ratio to plain (pytest / wall) |")
    print("| --- | --- | --- | --- |")
    for way, median in medians.items():
        ratio = (median["pytest_s"] / medians["plain"]["pytest_s"], median["wall_s"] / medians["plain"]["wall_s"])
        print(f"| {way} | {median['pytest_s']:.2f} s | {median['wall_s']:.2f} s | {ratio[0]:.2f}x / {ratio[1]:.2f}x |")
    if args.json is not None:
        args.json.write_text(json.dumps({"suite": SUITE, "tests": tests, "runs": runs, "medians": medians},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
