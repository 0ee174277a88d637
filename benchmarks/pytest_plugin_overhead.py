"""What the memory-guard pytest plugin costs, switched off and switched on.

usage: python benchmarks/pytest_plugin_overhead.py [--idle-repeats 30] [--repeats 3] [--only idle|active] [--json OUT]

1. idle (goal: <= 10 ms): every pytest run in an environment where Crash Guard is installed loads the plugin
   through its entry point, asked for or not. An unrelated suite (20 trivial tests written to a temp folder, no
   pytest settings) runs `installed` (the plugin loaded and inert) and `disabled` (`-p no:crashguard`),
   interleaved, each in a fresh process; the medians of the wall time, their ratio and difference in ms.
2. active (goal: guard <= 1.2x): a real suite that nobody here wrote, nibabel's own test_nifti1 and test_analyze
   (661 tests, installed with nibabel, run with --pyargs), three ways interleaved (plain, guard, every, plain, ...):
   - plain: no plugin (`-p no:crashguard`);
   - guard: `--memory-guard` as shipped (exact peaks, cleanup only after a test that grew past the threshold);
   - every: `--memory-guard --memory-cleanup-threshold=0`, a full cleanup after every test (the first version).
   Prints the median of pytest's own time and of the wall time for each, and the ratios to plain.
Every run starts from an empty folder, so no project's pytest settings apply.
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
IDLE_WAYS = {"installed": [], "disabled": ["-p", "no:crashguard"]}
IDLE_TESTS = "".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}\n\n" for i in range(20))
_PYTEST_TIME = re.compile(r" in ([0-9.]+)s")
_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|xfailed|error)")


def run_pytest(args: list[str], folder: Path, what: str) -> dict[str, float | int]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    found = _PYTEST_TIME.search(last)
    counts = {kind: int(n) for n, kind in _COUNTS.findall(last)}
    if done.returncode != 0 or found is None or counts.get("failed") or counts.get("error"):
        raise SystemExit(f"{what}: pytest failed (exit {done.returncode}): {last}\n{done.stderr[-2000:]}")
    return {"pytest_s": float(found.group(1)), "wall_s": wall, "tests": sum(counts.values())}


def check_installed(folder: Path) -> None:
    """The idle comparison means nothing unless the entry point really loads the plugin."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=folder, capture_output=True, text=True,
                          timeout=120)
    if "--memory-guard" not in done.stdout:
        raise SystemExit("the crashguard pytest plugin is not installed in this environment (pip install -e .)")


def idle(repeats: int) -> dict[str, object]:
    runs: dict[str, list[dict[str, float | int]]] = {way: [] for way in IDLE_WAYS}
    with tempfile.TemporaryDirectory(prefix="crashguard-plugin-idle-") as scratch:
        folder = Path(scratch)
        (folder / "test_unrelated.py").write_text(IDLE_TESTS)
        check_installed(folder)
        for way, args in IDLE_WAYS.items():  # one untimed round: the file cache, the bytecode
            run_pytest(args, folder, way)
        for _ in range(repeats):
            for way, args in IDLE_WAYS.items():
                runs[way].append(run_pytest(args, folder, way))
    wall = {way: statistics.median(float(r["wall_s"]) for r in found) for way, found in runs.items()}
    pairs = [a["wall_s"] - b["wall_s"] for a, b in zip(runs["installed"], runs["disabled"], strict=True)]
    difference_ms = (wall["installed"] - wall["disabled"]) * 1000
    print(f"idle: an unrelated suite ({runs['installed'][0]['tests']} tests), median of {repeats} interleaved runs")
    print("| way | wall time | ratio | difference |")
    print("| --- | --- | --- | --- |")
    print(f"| disabled (`-p no:crashguard`) | {wall['disabled'] * 1000:.0f} ms | 1.000x | |")
    print(f"| installed, not switched on | {wall['installed'] * 1000:.0f} ms | "
          f"{wall['installed'] / wall['disabled']:.3f}x | {difference_ms:+.1f} ms (median of the pairs "
          f"{statistics.median(pairs) * 1000:+.1f} ms) |")
    return {"tests": runs["installed"][0]["tests"], "runs": runs, "median_wall_s": wall,
            "difference_ms": difference_ms, "median_pair_difference_ms": statistics.median(pairs) * 1000}


def active(repeats: int) -> dict[str, object]:
    runs: dict[str, list[dict[str, float | int]]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="crashguard-plugin-bench-") as scratch:
        for _ in range(repeats):
            for way, args in WAYS.items():
                runs[way].append(run_pytest(["--pyargs", *SUITE, *args], Path(scratch), way))
    medians = {way: {key: statistics.median(float(r[key]) for r in found) for key in ("pytest_s", "wall_s")}
               for way, found in runs.items()}
    tests = int(runs["plain"][0]["tests"])
    print(f"active: nibabel {' + '.join(s.rsplit('.', 1)[1] for s in SUITE)}: {tests} tests, median of {repeats} "
          f"interleaved runs")
    print("| way | pytest time | wall time | ratio to plain (pytest / wall) |")
    print("| --- | --- | --- | --- |")
    for way, median in medians.items():
        ratio = (median["pytest_s"] / medians["plain"]["pytest_s"], median["wall_s"] / medians["plain"]["wall_s"])
        print(f"| {way} | {median['pytest_s']:.2f} s | {median['wall_s']:.2f} s | {ratio[0]:.2f}x / {ratio[1]:.2f}x |")
    return {"suite": SUITE, "tests": tests, "runs": runs, "medians": medians}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-repeats", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the active comparison")
    parser.add_argument("--only", choices=("idle", "active"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures: dict[str, object] = {}
    if args.only in (None, "idle"):
        figures["idle"] = idle(args.idle_repeats)
    if args.only in (None, "active"):
        figures["active"] = active(args.repeats)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
