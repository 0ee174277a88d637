"""`crashguard cleanup`: emergency cleanup, printed as a report."""

from __future__ import annotations

import argparse
import json

from ..guard.cleanup import CleanupReport, emergency_cleanup
from .units import human_bytes


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cleanup", help="emergency cleanup; prints what each step freed")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def format_report(report: CleanupReport) -> str:
    lines = [f"process {report.pid}: RSS {human_bytes(report.rss_before)} -> {human_bytes(report.rss_after)} "
             f"(freed {human_bytes(report.rss_freed)}) in {report.seconds * 1000:.0f} ms"]
    if report.vram_freed is not None:
        lines.append(f"  VRAM cache {human_bytes(report.vram_before)} -> {human_bytes(report.vram_after)}")
    for step in report.steps:
        freed = f", freed {human_bytes(step.freed)}" if step.freed else ""
        lines.append(f"  {'✓' if step.done else '-'} {step.name}: {step.detail}{freed}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = emergency_cleanup()
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0
