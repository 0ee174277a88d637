"""`crashguard cleanup`: emergency cleanup here and in every live registered run, printed as a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..guard.cleanup import CleanupReport
from ..runs.control import DEFAULT_CLEANUP_TIMEOUT, CleanupResult, cleanup_runs
from ..sidecar.protocol import to_wire
from ..util.json_io import json_text
from ..util.units import human_bytes


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cleanup", help="emergency cleanup in every registered run; prints what was freed")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs register (default runs)")
    parser.add_argument("--run", action="append", dest="names", metavar="NAME", help="only this run (repeatable)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_CLEANUP_TIMEOUT,
                        help=f"seconds to wait for each run's answer (default {DEFAULT_CLEANUP_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (the protocol's shape)")
    parser.set_defaults(run=run)


def format_report(report: CleanupReport, title: str) -> list[str]:
    lines = [f"{title} (pid {report.pid}): RSS {human_bytes(report.rss_before)} -> {human_bytes(report.rss_after)} "
             f"(freed {human_bytes(report.rss_freed)}) in {report.seconds * 1000:.0f} ms"]
    if report.vram_freed is not None:
        lines.append(f"  VRAM cache {human_bytes(report.vram_before)} -> {human_bytes(report.vram_after)}")
    for step in report.steps:
        freed = f", freed {human_bytes(step.freed)}" if step.freed else ""
        lines.append(f"  {'✓' if step.done else '-'} {step.name}: {step.detail}{freed}")
    return lines


def format_result(result: CleanupResult) -> str:
    lines = [f"RAM used {human_bytes(result.ram_before)} -> {human_bytes(result.ram_after)} "
             f"(freed {human_bytes(result.freed)})"]
    if result.sidecar is not None:
        lines += format_report(result.sidecar, "this process")
    if not result.runs:
        lines.append("no live registered runs")
    for entry in result.runs:
        name = f"run {entry.run}" + (f" rank {entry.rank}" if entry.rank else "")
        if not entry.ok or entry.report is None:
            lines.append(f"{name} (pid {entry.pid}): no cleanup ({entry.error or 'no answer'})")
            continue
        freed = entry.report.get("rss_freed", 0)
        tree = ""
        if entry.rss_before is not None and entry.rss_after is not None:
            tree = f"; process tree {human_bytes(entry.rss_before)} -> {human_bytes(entry.rss_after)}"
        lines.append(f"{name} (pid {entry.pid}): freed {human_bytes(freed)} inside the run{tree}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = cleanup_runs(args.runs_dir, names=args.names, timeout=args.timeout)
    print(json_text(to_wire(result), indent=2) if args.json else format_result(result))
    return 0 if all(entry.ok for entry in result.runs) else 1
