"""What `crashguard find-batch` reports: a table for the terminal, JSON for scripts, a plot, and the chosen size
written into the config."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..plots.figure import png_figure
from ..util.json_io import write_json_atomic
from ..util.units import human_bytes
from .search import SearchResult


def table(result: SearchResult, resource: str) -> str:
    lines = [f"budget: {human_bytes(result.budget)} of {resource}", "",
             f"{'micro-batch':>11}  {'peak':>10}  {'steps/s':>8}  result"]
    for probe in result.probes:
        speed = f"{probe.steps_per_second:.3f}" if probe.steps_per_second else "-"
        verdict = "fits" if probe.fits else ("OOM (caught)" if probe.oom else "over budget")
        lines.append(f"{probe.micro_batch:>11}  {human_bytes(probe.peak):>10}  {speed:>8}  {verdict}")
    lines.append("")
    lines.append(f"largest micro-batch under the budget: {result.best if result.best else 'none'} "
                 f"({result.stopped_because}; {result.over_budget_probes} probe(s) over the budget)")
    return "\n".join(lines)


def to_json(result: SearchResult, resource: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "budget": result.budget, "best_micro_batch": result.best,
            "stopped_because": result.stopped_because, "over_budget_probes": result.over_budget_probes,
            "probes": [asdict(p) for p in result.probes], **extra}


def plot(result: SearchResult, resource: str, out: Path) -> Path:
    probes = sorted(result.probes, key=lambda p: p.micro_batch)
    with png_figure(out, 900, 360, ncols=2) as (fig, (mem_ax, speed_ax)):
        measured = [(p.micro_batch, p.peak / 2**20, p.fits) for p in probes if p.peak is not None]
        mem_ax.plot([size for size, _, _ in measured], [mib for _, mib, _ in measured], marker="o")
        for size, mib, fits in measured:
            if not fits:
                mem_ax.scatter([size], [mib], color="red", zorder=3)
        mem_ax.axhline(result.budget / 2**20, color="red", linestyle="--", label="budget")
        mem_ax.set_title(f"peak {resource} (MiB)")
        mem_ax.set_xlabel("micro-batch")
        mem_ax.legend(fontsize=8)
        timed = [(p.micro_batch, p.steps_per_second) for p in probes if p.steps_per_second]
        speed_ax.plot([size for size, _ in timed], [rate * size for size, rate in timed], marker="o")
        speed_ax.set_title("samples / s")
        speed_ax.set_xlabel("micro-batch")
        for ax in (mem_ax, speed_ax):
            ax.grid(alpha=0.3)
        fig.tight_layout()
    return out


def write_micro_batch(config_path: Path, micro_batch: int) -> int:
    """Set train.micro_batch in a config file (atomically), capped at its effective batch; returns the value set."""
    data = json.loads(config_path.read_text(encoding="utf-8"))
    train = data.setdefault("train", {})
    effective = int(train.get("effective_batch", 4))
    value = min(micro_batch, effective)
    train["micro_batch"] = value
    write_json_atomic(config_path, data, indent=2)
    return value
