"""`python -m benchmarks.spike_drill`: the full fast-spike drill (issue 22), side by side with the sidecar as it was.

The drill (tests/python/helpers/spike_drill.py, whose short version is tests/python/sidecar/test_drill.py): in a
4 GiB memory group this script creates and removes, a real guarded trainer with 12 s steps, the real sidecar at its
default 1 s interval and an unregistered hog growing 1 GiB/s; 2.4 GiB between the critical threshold and the
limit (as 90 % of 24 GB). Each round runs it twice, in turn:
- "now": `crashguard serve`;
- "before": the same server with the two mechanisms of issue 22 switched back to what they were (a fixed sample
  interval, `Sidecar.next_delay` -> the configured interval; a fixed 5 s cleanup wait, `Ladder._limit_first` ->
  never), patched in the server process only.

Figures per run: when critical was seen after RAM crossed it (interpolated from the samples), the first critical
sample -> the checkpoint's write (goal: <= 1 s), the checkpoint -> the hog at the limit (goal: > 0, before), the
sample gaps while quiet and in the spike; the hog never signalled, the resumed run loses no step. Exit status 1
when "now" missed a goal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HELPERS = Path(__file__).resolve().parents[1] / "tests" / "python"
sys.path[:0] = [str(HELPERS / "helpers"), str(HELPERS / "children")]

from memory_groups import MemoryGroup, remove, writable_parent  # noqa: E402
from spike_drill import DrillPlan, DrillResult, NoRoom, run_drill  # noqa: E402

from crashguard.util.json_io import json_text  # noqa: E402

GOAL_S = 1.0
BEFORE = [sys.executable, "-c",
          "from crashguard.sidecar import core, escalation\n"
          "core.Sidecar.next_delay = lambda self: self.settings.interval\n"
          "escalation.Ladder._limit_first = lambda self, o, wait: False\n"
          "from crashguard.sidecar.main import main\n"
          "raise SystemExit(main())\n"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spike_drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of now + before (default 3)")
    parser.add_argument("--step-seconds", type=float, default=12.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def _checks(result: DrillResult) -> dict[str, bool]:
    steps = [(r["step"], r["batch"]) for r in result.steps]
    return {
        "hog_never_signalled": result.hog_signals is None and result.hog_was_running,
        "checkpoint_within_goal": 0 < result.checkpoint_at - result.critical_at <= GOAL_S,
        "checkpoint_before_limit": result.hog_reached is not None and result.checkpoint_at < result.hog_reached,
        "no_step_lost_on_resume": result.resumed_rc == 0 and steps == [(n + 1, n) for n in range(result.plan.steps)],
    }


async def _one(plan: DrillPlan, variant: str) -> dict[str, Any]:
    found = writable_parent()
    if isinstance(found, str):
        raise SystemExit(f"spike drill: {found}")
    parent, version = found
    path = parent / f"crashguard-bench-{os.getpid()}-{variant}"
    path.mkdir()
    group = MemoryGroup(path, version)
    try:
        with tempfile.TemporaryDirectory(prefix="crashguard-drill-") as work:
            result = await run_drill(plan, group, Path(work), server=BEFORE if variant == "before" else None)
            return {"variant": variant, **result.figures(), "checks": _checks(result),
                    "actions": [a["action"] for a in result.actions]}
    finally:
        remove(group)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def run(args: argparse.Namespace) -> int:
    plan = DrillPlan(step_seconds=args.step_seconds)
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.rounds):
            for variant in ("now", "before"):
                runs.append(asyncio.run(_one(plan, variant)))
    except NoRoom as exc:
        raise SystemExit(f"spike drill: {exc}") from None
    now = [r for r in runs if r["variant"] == "now"]
    ok = all(all(r["checks"].values()) for r in now)
    if args.json:
        print(json_text({"plan": plan.__dict__, "runs": runs, "ok": ok}))
        return 0 if ok else 1
    print(f"fast-spike drill: {plan.limit / 2**30:g} GiB group, critical {runs[0]['critical_percent']}% "
          f"({plan.to_limit / 2**30:g} GiB below the limit), hog {plan.rate_mb} MiB/s, steps of "
          f"{plan.step_seconds:g} s, sampleIntervalMs {plan.interval_ms}; {args.rounds} rounds")
    header = (f"{'variant':8} {'seen after':>10} {'critical->ckpt':>14} {'ckpt before limit':>17} "
              f"{'spike gaps':>24} {'checks'}")
    print(header)
    for r in runs:
        failed = [k for k, v in r["checks"].items() if not v]
        before_limit = r["checkpoint_before_hog_at_limit_s"]
        print(f"{r['variant']:8} {r['seen_after_crossing_s']:>9.3f}s {r['critical_to_checkpoint_s']:>13.3f}s "
              f"{'n/a' if before_limit is None else f'{before_limit:.3f}s':>17} "
              f"{', '.join(f'{g:.2f}' for g in r['spike_gaps_s']):>24} "
              f"{'ok' if not failed else 'MISSED ' + ', '.join(failed)}")
    for variant in ("now", "before"):
        mine = [r for r in runs if r["variant"] == variant]
        print(f"median {variant:6}: critical seen {_median(mine, 'seen_after_crossing_s')} s after the crossing; "
              f"checkpoint {_median(mine, 'critical_to_checkpoint_s')} s after the first critical sample, "
              f"{_median(mine, 'checkpoint_before_hog_at_limit_s')} s before the hog reached the limit")
    print(f"goal (now): checkpoint <= {GOAL_S:g} s after critical and before the limit, hog never signalled, no step "
          f"lost: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
