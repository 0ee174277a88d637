"""`crashguard find-batch --config ...`: the largest micro-batch under the memory budget, found with real training
steps; the report goes to find-batch.json and find-batch.png. `bench`, its first name, is kept as an alias."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..util.json_io import json_text
from ..util.units import parse_size

REPORT_NAME = "find-batch"  # find-batch.json and find-batch.png in --out


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("find-batch", aliases=["bench"],
                            help="find the largest micro-batch that fits under the memory budget")
    parser.add_argument("--config", type=Path, required=True, help="training config (model, ROI, thresholds)")
    parser.add_argument("--budget", type=parse_size, default=None, metavar="SIZE",
                        help="peak memory allowed (e.g. 6GB); default: up to memory.log_ram_fraction of RAM")
    parser.add_argument("--gpu-warning", type=float, default=0.85, help="VRAM warning fraction (default 0.85)")
    parser.add_argument("--max-micro", type=int, default=32, help="largest micro-batch to try (default 32)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per probe (default 2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: the config's")
    parser.add_argument("--out", type=Path, default=Path("runs/find-batch"),
                        help="folder for find-batch.json and find-batch.png (default runs/find-batch)")
    parser.add_argument("--write-config", action="store_true", help="store the result as train.micro_batch")
    parser.set_defaults(run=run)


def _default_budget(device_type: str, ram_fraction: float, gpu_warning: float, torch: object) -> int:
    """How far this process may grow before the resource reaches its warning threshold."""
    if device_type == "cuda":
        _, total = torch.cuda.mem_get_info()  # type: ignore[attr-defined]
        return int(gpu_warning * total)
    from ..monitor.host import read_ram
    from ..monitor.processes import own_rss

    ram = read_ram()
    return own_rss() + max(0, int(ram_fraction * ram.total) - ram.used)


def run(args: argparse.Namespace) -> int:
    from ..training.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"crashguard find-batch: {exc}", file=sys.stderr)
        return 2
    import torch

    from ..batch_search.probe import ProbeSettings, TrainStepProbe
    from ..batch_search.report import plot, table, to_json, write_micro_batch
    from ..batch_search.search import search_micro_batch
    from ..training.loop import pick_device

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = pick_device(args.device or config.train.device)
    probe = TrainStepProbe(config, device, ProbeSettings(steps=args.steps))
    probe.warm_up()
    resource = "VRAM (reserved)" if device.type == "cuda" else "RAM (process RSS)"
    budget = args.budget or _default_budget(device.type, config.memory.log_ram_fraction, args.gpu_warning, torch)
    result = search_micro_batch(probe, budget, max_micro=args.max_micro)
    print(f"inputs: {probe.crops.source}")
    print(table(result, resource))
    args.out.mkdir(parents=True, exist_ok=True)
    extra = {"config": str(args.config), "device": device.type, "roi_size": list(probe.roi),
             "inputs": probe.crops.source}
    report, figure = args.out / f"{REPORT_NAME}.json", args.out / f"{REPORT_NAME}.png"
    report.write_text(json_text(to_json(result, resource, extra), indent=2) + "\n")
    plot(result, resource, figure)
    print(f"wrote {report} and {figure}")
    if result.best is None:
        return 1
    if args.write_config:
        value = write_micro_batch(args.config, result.best)
        print(f"set train.micro_batch = {value} in {args.config}")
    return 0
