"""The recipe on realistic data: the CPU preset against the original recipe, same data, same number of steps.

usage: python benchmarks/recipe_realistic.py [--steps 240] [--val-every 40] [--cases 12] [--budget-gb 3.0]

1. `crashguard sample-data --realistic` (if missing): `--cases` cases of 240 x 240 x 155 x 4 in --data.
2. Two training runs, one after the other, each in its own process (`crashguard train --no-supervise`):
   - "original": the recipe before issue 14: uniform 32³ crops, plain Dice (smooth_nr=0), effective batch 4 as
     2 x 2, no brain crop;
   - "cpu-preset": config/presets/cpu.json (Dice + BCE, 1/3 foreground crops, brain crop, its ROI and batch).
   Both at a constant learning rate (the preset's warm-up + cosine span a whole run, not a short step budget).
   Both validate the untrained model, then every --val-every steps (mean Dice over TC/WT/ET on the held-out
   cases), and run under the same RAM budget (--budget-gb) with cache_rate "auto".
3. Prints one JSON object (final Dice per run, wall time, peak RSS against the budget) and writes each run's
   curves (crashguard.plots) to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def original_recipe(base: dict[str, Any], brain_crop: bool = False) -> dict[str, Any]:
    config = json.loads(json.dumps(base))
    config["name"] = "original"
    config["data"]["crop_to_brain"] = brain_crop
    config["train"].update(roi_size=[32, 32, 32], effective_batch=4, micro_batch=2, loss="dice", crop="uniform",
                           learning_rate=0.003)
    return config


def run_training(config: dict[str, Any], out: Path, name: str) -> dict[str, Any]:
    path = out / f"{name}.json"
    path.write_text(json.dumps(config, indent=2))
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "crashguard", "train", "--config", str(path),
                              "--runs-dir", str(out / "runs"), "--run-name", name, "--resume", "never",
                              "--no-supervise", "--no-progress"], cwd=REPO)
    _, status, usage = __import__("os").wait4(child.pid, 0)
    seconds = time.monotonic() - started
    if status != 0:
        raise SystemExit(f"{name}: training exited with status {status}")
    records = [json.loads(line) for line in (out / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["type"] == "val"]
    memory = next(r for r in records if r["type"] == "event" and r.get("event") == "memory")
    budget = memory.get("ram_budget")
    return {
        "steps": max(r["step"] for r in records if r["type"] == "step"),
        "seconds": round(seconds),
        "dice": [{k: v[k] for k in ("step", "dice_mean", "dice_tc", "dice_wt", "dice_et")} for v in vals],
        "final_dice_mean": vals[-1]["dice_mean"],
        "peak_rss_mib": round(memory["peak_rss"] / 2**20),
        "peak_rss_wait4_mib": round(usage.ru_maxrss / 1024),  # the kernel's figure at exit (never above the first)
        "budget_mib": round(budget / 2**20) if budget else None,
        "peak_share_of_budget": round(memory["peak_rss"] / budget, 3) if budget else None,
        "cache": next(r["message"] for r in records if r["type"] == "event" and r.get("event") == "start"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--val-every", type=int, default=40, help="validate every N steps (rounded to epochs)")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--budget-gb", type=float, default=3.0, help="memory.ram_budget_gb of both runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--val-at-start", action=argparse.BooleanOptionalAction, default=True,
                        help="validate the untrained models too (default yes)")
    parser.add_argument("--original-brain-crop", action="store_true",
                        help="give the original recipe the brain crop too (its validation is then ~2x cheaper; "
                             "its uniform crops then see less air, which favours it)")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "realistic")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-recipe")
    args = parser.parse_args()

    task_dir = args.data / "Task01_BrainTumour"
    if not (task_dir / "dataset.json").is_file():
        subprocess.run([sys.executable, "-m", "crashguard", "sample-data", "--realistic", "--cases",
                        str(args.cases), "--out", str(task_dir)], cwd=REPO, check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    preset = json.loads((REPO / "config" / "presets" / "cpu.json").read_text())
    preset.pop("$schema", None)
    preset["name"] = "cpu-preset"
    results: dict[str, Any] = {"steps": args.steps, "cases": args.cases, "budget_gb": args.budget_gb}
    results["original_brain_crop"] = args.original_brain_crop
    for name, config in (("original", original_recipe(preset, args.original_brain_crop)), ("cpu-preset", preset)):
        train = config["train"]
        n_train = round(args.cases * (1 - config["data"]["val_fraction"]))
        steps_per_epoch = max(1, n_train // train["effective_batch"])
        config["data"].update(root=str(args.data), check="fast")
        train.update(max_steps=args.steps, epochs=-(-args.steps // steps_per_epoch), val_at_start=args.val_at_start,
                     val_every_epochs=max(1, args.val_every // steps_per_epoch), threads=args.threads, device="cpu")
        # A constant rate for both: the comparison is of crops, loss and brain crop; the preset's warm-up and cosine
        # are laid out for a whole run's steps, which a short step budget would squeeze.
        train.update(lr_schedule="constant", warmup_steps=0)
        config["memory"]["ram_budget_gb"] = args.budget_gb
        config["checkpoint"] = {"every_steps": args.steps, "keep": 1}
        results[name] = run_training(config, args.out, name)
        from crashguard.plots.from_run import plot_run

        plot_run(args.out / "runs" / name, args.out / "plots" / name)
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    (args.out / "summary.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
