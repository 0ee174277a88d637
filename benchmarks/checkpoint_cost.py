"""What periodic checkpoints cost a training loop: none vs a synchronous torch.save vs Crash Guard's background
writer, at the same interval, in one run.

    python -m benchmarks.checkpoint_cost [--steps 240] [--every 60] [--width 2048] [--layers 3] [--repeats 3]

Each mode runs in its own child process (its peak RSS, the kernel's VmHWM, is then its own), the modes interleaved
round after round so that a change in the machine's load hits them alike. A child trains an MLP (AdamW, so a
checkpoint holds the weights and twice their size of optimizer state) through `guarded_run`: `none` with no
periodic checkpoint, `sync` writing every `--every` steps at the boundary (torch.save to a temp file, fsync,
rename: what the loop waits for), `background` the same checkpoints snapshotted at the boundary and written by the
writer thread. Only the steps are timed (the run's final checkpoint is not). Prints a Markdown table (median
steps/s of the rounds, the ratio to `none`, peak RSS) and writes JSON with every round (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("none", "sync", "background")


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child(mode: str, steps: int, every: int, width: int, layers: int, runs_dir: str, warmup: int) -> dict[str, Any]:
    import torch
    from torch import nn

    import crashguard

    torch.manual_seed(0)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # leave a core to the writer and the machine
    model = nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width), nn.ReLU())])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = {"x": torch.randn(32, width), "y": torch.randn(32, width)}
    options: dict[str, Any] = {"checkpoint_every_minutes": None, "watchdog": False, "handle_signals": False,
                               "oom_score_adj": None, "keep": 2}
    if mode != "none":
        options["checkpoint_every_steps"] = every
        options["background_checkpoints"] = mode == "background"
    with crashguard.guarded_run(f"bench-{mode}", model=model, optimizer=optimizer, runs_dir=runs_dir,
                                **options) as run:
        loss_of = lambda b: nn.functional.mse_loss(model(b["x"]), b["y"])  # noqa: E731
        for _ in range(warmup):
            run.step(batch, loss_of)
        durations = []
        started = time.perf_counter()
        for _ in range(steps):
            before = time.perf_counter()
            run.step(batch, loss_of)
            durations.append(time.perf_counter() - before)
        run.checkpoints.flush()  # the last background write belongs to the timed work
        seconds = time.perf_counter() - started
        snapshot = run.checkpoints._snapshot_bytes
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    # What a checkpoint boundary costs the loop: its step's time over the median step's (robust to a load change
    # that moves every step; the boundary steps are those after which a checkpoint fell due).
    typical = statistics.median(durations)
    boundaries = [durations[i] for i in range(every - 1 - warmup % every, steps, every)] if mode != "none" else []
    stall = sum(d - typical for d in boundaries)
    return {"mode": mode, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "median_step_s": typical, "stall_per_checkpoint_s": stall / len(boundaries) if boundaries else 0.0,
            "stall_share": stall / seconds,
            "peak_rss": peak_rss(), "checkpoints": steps // every if mode != "none" else 0,
            "weights_bytes": params, "snapshot_bytes": snapshot}


def run_benchmark(steps: int, every: int, width: int, layers: int, repeats: int, warmup: int = 5
                  ) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crashguard-ckpt-bench-") as tmp:
        for index in range(repeats):
            for mode in MODES:
                out = subprocess.run([sys.executable, "-m", "benchmarks.checkpoint_cost", "--child", mode,
                                      "--steps", str(steps), "--every", str(every), "--width", str(width),
                                      "--layers", str(layers), "--warmup", str(warmup),
                                      "--runs-dir", str(Path(tmp, f"round{index}"))],
                                     capture_output=True, text=True, check=True)
                rounds.append({"round": index, **json.loads(out.stdout.strip().splitlines()[-1])})
    summary: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in rounds if r["mode"] == mode]
        summary[mode] = {"steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
                         "peak_rss": max(r["peak_rss"] for r in mine),
                         "stall_per_checkpoint_s": statistics.median(r["stall_per_checkpoint_s"] for r in mine),
                         "stall_share": statistics.median(r["stall_share"] for r in mine)}
    # The ratio per round (interleaved neighbours), then its median: a load change between rounds cancels out.
    for mode in MODES:
        ratios = [r["steps_per_s"] / n["steps_per_s"] for r, n in
                  zip([r for r in rounds if r["mode"] == mode], [r for r in rounds if r["mode"] == "none"],
                      strict=True)]
        summary[mode]["ratio"] = statistics.median(ratios)
    setup = {"steps": steps, "every": every, "width": width, "layers": layers, "repeats": repeats,
             "weights_bytes": rounds[0]["weights_bytes"],
             "snapshot_bytes": next((r["snapshot_bytes"] for r in rounds if r["snapshot_bytes"]), None)}
    return {"setup": setup, "summary": summary, "rounds": rounds}


def table(result: dict[str, Any]) -> str:
    setup, summary = result["setup"], result["summary"]
    lines = [f"{setup['layers']} x Linear({setup['width']}) + AdamW: weights {setup['weights_bytes'] / 2**20:.0f} "
             f"MiB, a checkpoint's snapshot {(setup['snapshot_bytes'] or 0) / 2**20:.0f} MiB; a checkpoint every "
             f"{setup['every']} of {setup['steps']} timed steps; median of {setup['repeats']} interleaved rounds",
             "", "| checkpoints | steps/s | vs none | the loop waits per checkpoint | share of the run's time | "
             "peak RSS |", "| --- | --- | --- | --- | --- | --- |"]
    names = {"none": "none", "sync": "synchronous torch.save", "background": "Crash Guard, background"}
    for mode in MODES:
        row = summary[mode]
        lines.append(f"| {names[mode]} | {row['steps_per_s']:.2f} | {row['ratio']:.3f} | "
                     f"{row['stall_per_checkpoint_s'] * 1000:.0f} ms | {row['stall_share']:.2%} | "
                     f"{row['peak_rss'] / 2**20:.0f} MiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--every", type=int, default=60)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/checkpoint_cost.json"))
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--runs-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.every, args.width, args.layers, args.runs_dir,
                               args.warmup)))
        return 0
    result = run_benchmark(args.steps, args.every, args.width, args.layers, args.repeats, args.warmup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
