"""`crashguard find-batch` with real training steps on CPU under a small budget; `bench`, its first name, still
answers as an alias."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("monai")

# Above the noisy micro-batch-1 peak of torch 2.13 CPU conv3d (up to ~700 MiB here, once over 800 under a load of 6),
# well below micro-batch 32.
BUDGET_MIB = 900


def _config(tmp_path: Path, data_root: Path) -> Path:
    config = {"name": "find-batch-test", "data": {"root": str(data_root)},
              "model": {"init_filters": 8, "levels": 3},
              "train": {"roi_size": [32, 32, 32], "effective_batch": 16, "micro_batch": 1, "threads": 1,
                        "device": "cpu"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.slow
def test_find_batch_finds_the_largest_micro_batch_under_the_budget(tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    made = subprocess.run([sys.executable, "-m", "crashguard", "sample-data", "--out",
                           str(data_root / "Task01_BrainTumour"), "--cases", "4", "--size", "40"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    config = _config(tmp_path, data_root)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "crashguard", "find-batch", "--config", str(config),
                             "--budget", f"{BUDGET_MIB}MB", "--max-micro", "32", "--steps", "1", "--out", str(out),
                             "--write-config"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((out / "find-batch.json").read_text())
    budget = BUDGET_MIB * 2**20
    assert report["budget"] == budget
    best = report["best_micro_batch"]
    assert best is not None and best < 32
    probes = {p["micro_batch"]: p for p in report["probes"]}
    assert probes[best]["peak"] <= budget
    assert probes[best + 1]["peak"] > budget or probes[best + 1]["oom"]  # the next size up was measured over
    assert report["over_budget_probes"] == 1
    assert (out / "find-batch.png").stat().st_size > 0
    assert f"wrote {out / 'find-batch.json'} and {out / 'find-batch.png'}" in result.stdout
    written = json.loads(config.read_text())["train"]["micro_batch"]
    assert written == min(best, 16)
    assert "largest micro-batch under the budget" in result.stdout
    assert report["inputs"].startswith("4 training crops of")  # real crops of the synthetic data


@pytest.mark.parametrize("command", ["find-batch", "bench"])
def test_find_batch_and_its_alias_reject_a_bad_config(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": {"micro_batch": "two"}}))
    result = subprocess.run([sys.executable, "-m", "crashguard", command, "--config", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "crashguard find-batch: " in result.stderr and "train.micro_batch" in result.stderr


def test_the_alias_is_the_same_command() -> None:
    from crashguard.cli import build_parser

    parser = build_parser()
    for command in ("find-batch", "bench"):
        args = parser.parse_args([command, "--config", "c.json"])
        assert args.run.__module__ == "crashguard.cli.find_batch" and args.out == Path("runs/find-batch")
    listed = parser.format_help()
    assert "find-batch" in listed
