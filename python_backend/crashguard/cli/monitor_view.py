"""Renders a memory snapshot as the terminal monitor's screen."""

from __future__ import annotations

from ..monitor.gpu import GpuReading
from ..monitor.snapshot import Snapshot
from ..monitor.thresholds import MemoryStatus, Thresholds
from ..util.units import human_bytes

_COLOUR = {MemoryStatus.NORMAL: "\033[32m", MemoryStatus.WARNING: "\033[33m", MemoryStatus.CRITICAL: "\033[31m"}
_RESET = "\033[0m"
BAR_WIDTH = 30


def _bar(fraction: float, status: MemoryStatus, colour: bool) -> str:
    filled = min(BAR_WIDTH, max(0, round(fraction * BAR_WIDTH)))
    bar = "█" * filled + "·" * (BAR_WIDTH - filled)
    return f"{_COLOUR[status]}{bar}{_RESET}" if colour else bar


def _tag(status: MemoryStatus, colour: bool) -> str:
    label = status.value.upper()
    return f"{_COLOUR[status]}{label}{_RESET}" if colour else label


def gpu_process_lines(gpu: GpuReading, limit: int = 8) -> list[str]:
    """Who holds this GPU's memory: every process NVML lists on it (the reading's order: heaviest first), with
    user and command."""
    ordered = gpu.processes
    if not ordered:
        return ["      no processes on this GPU"]
    lines = [f"      {'pid':>7}  {'VRAM':>10}  {'user':<10}  command"]
    for proc in ordered[:limit]:
        used = human_bytes(proc.used) if proc.used is not None else "n/a"
        user = proc.user if proc.user is not None else "?"
        command = proc.command if proc.command is not None else f"{proc.name} (not visible from here)"
        lines.append(f"      {proc.pid:>7}  {used:>10}  {user[:10]:<10}  {command[:100]}")
    if len(ordered) > limit:
        lines.append(f"      ... and {len(ordered) - limit} more")
    return lines


def render(snapshot: Snapshot, gpu_thresholds: Thresholds, colour: bool = True) -> str:
    ram = snapshot.ram
    limit = "physical RAM" if ram.limit_source == "physical" else f"{ram.limit_source} limit ({ram.cgroup_path})"
    lines = [
        f"Crash Guard memory monitor  {_tag(snapshot.ram_status, colour)}",
        "",
        f"RAM   {_bar(ram.fraction, snapshot.ram_status, colour)} {ram.percent:5.1f}%  "
        f"used {human_bytes(ram.used)} / {human_bytes(ram.total)}, available {human_bytes(ram.available)}",
        f"      limit: {limit}",
    ]
    if ram.swap_total:
        lines.append(f"Swap  {ram.swap_percent:5.1f}%  used {human_bytes(ram.swap_used)} / "
                     f"{human_bytes(ram.swap_total)}")
    else:
        lines.append("Swap  none")
    if snapshot.pressure is not None:  # the kernel's 10 s averages of memory stalls (docs/defences.md)
        p = snapshot.pressure
        full = f", full {p.full.avg10:.1f}%" if p.full is not None else ""
        lines.append(f"Stall some {p.some.avg10:.1f}%{full} of the last 10 s waiting for memory (PSI)")
    if snapshot.gpus:
        for gpu in snapshot.gpus:
            if gpu.percent is None:
                lines.append(f"GPU {gpu.index} {gpu.name}: n/a")
                continue
            status = gpu_thresholds.classify(gpu.percent / 100)
            util = "n/a" if gpu.utilization is None else f"{gpu.utilization}%"
            lines.append(f"GPU {gpu.index} {_bar(gpu.percent / 100, status, colour)} {gpu.percent:5.1f}%  "
                         f"used {human_bytes(gpu.used)} / {human_bytes(gpu.total)}, util {util}  {gpu.name}")
            lines += gpu_process_lines(gpu)
    else:
        lines.append(f"GPU   none ({snapshot.gpu_reason or 'no device'})")
    if snapshot.processes:
        lines += ["", "Heaviest processes (RSS)"]
        lines += [f"  {p.pid:>7}  {human_bytes(p.rss):>10}  {p.name}" for p in snapshot.processes]
    return "\n".join(lines)
