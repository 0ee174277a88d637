"""The GPU truth checks (scripts/gpu-check.sh runs them: `pytest -m gpu`). Each test fills one row of the table
printed at the end (`@pytest.mark.gpu_line(...)` names the row; `record_property("figures", ...)` fills it), and is
skipped, with the reason, where there is no CUDA GPU. The table also goes to $CRASHGUARD_GPU_TABLE when set."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from locations import CHILDREN

# The table's rows follow the order (files), then each file's order.
ORDER = ["test_nvml_truth", "test_sidecar_gauge", "test_cuda_training", "test_find_batch_gpu", "test_sliding_gpu",
         "test_cleanup_gpu", "test_ddp_gpu"]


@dataclass
class Row:
    line: str
    outcome: str
    figures: str
    rank: int = len(ORDER)


_rows: list[Row] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu_line(name): the row of the GPU check's table this test fills")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    marker = item.get_closest_marker("gpu_line")
    if marker is None or not (report.when == "call" or report.skipped or report.failed):
        return report  # a row per test: its call, or the setup that skipped or failed it
    figures = dict(item.user_properties).get("figures", "")
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        outcome, figures = "skipped", str(reason).removeprefix("Skipped: ")
    elif report.failed:
        outcome = "FAILED" if report.when == "call" else f"ERROR in {report.when}"
        message = report.longreprtext.strip().splitlines()
        figures = (figures + " — " if figures else "") + (message[-1][:200] if message else "")
    else:
        outcome = "pass"
    stem = item.path.stem
    _rows.append(Row(str(marker.args[0]), outcome, figures, ORDER.index(stem) if stem in ORDER else len(ORDER)))
    return report


def _header() -> str:
    parts = [f"GPU check {datetime.date.today().isoformat()}"]
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
        names = [line.strip() for line in query.stdout.splitlines() if line.strip()]
        if names:
            parts.append(f"{len(names)} x {names[0].split(',')[0]}, driver {names[0].split(',')[-1].strip()}")
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"torch {torch.__version__} (CUDA {torch.version.cuda})")
    return ", ".join(parts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _rows:
        return
    lines = [_header(), "", "| check | result | figures |", "| --- | --- | --- |"]
    rows = sorted(_rows, key=lambda r: r.rank)
    lines += [f"| {r.line} | {r.outcome} | {r.figures.replace('|', '/')} |" for r in rows]
    terminalreporter.section("GPU truth")
    for line in lines:
        terminalreporter.write_line(line)
    target = os.environ.get("CRASHGUARD_GPU_TABLE")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text("\n".join(lines) + "\n")


# -- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cuda() -> Any:
    """torch, where it has a CUDA GPU; else the test is skipped, saying why."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA GPU here (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    return torch


@pytest.fixture(scope="session")
def smi(cuda: Any) -> Callable[..., list[list[str]]]:
    """nvidia-smi --query-...: rows of fields (no units, no header)."""
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi not found")

    def query(kind: str, fields: str) -> list[list[str]]:
        out = subprocess.run(["nvidia-smi", f"--query-{kind}={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return [[f.strip() for f in line.split(",")] for line in out.splitlines() if line.strip()]

    return query


@pytest.fixture
def holder(cuda: Any) -> Iterator[dict[str, Any]]:
    """A known process holding HOLD_MIB of VRAM on cuda:0: {"pid", "reserved", "uuid"}."""
    from gpu_helpers import HOLD_MIB
    from training_helpers import child_env

    proc = subprocess.Popen([sys.executable, str(CHILDREN / "vram_holder.py"), str(HOLD_MIB), "--known-holder"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env())
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    assert line, "the holder died before holding its memory"
    yield json.loads(line)
    proc.stdin.close()
    proc.wait(timeout=60)


@pytest.fixture(scope="session")
def gpu_data(cuda: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a synthetic Task01_BrainTumour of 18 cases of 64³ (padded to the ROI by the transforms)."""
    from crashguard.training.sample_data import write_sample_dataset

    root = tmp_path_factory.mktemp("gpu-data")
    write_sample_dataset(root / "Task01_BrainTumour", cases=18, size=64, seed=3)
    return root

