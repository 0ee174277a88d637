"""Checkpoints: atomic writes that survive a kill mid-write, last-K pruning, weights-only loading."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from training_helpers import child_env, crashguard

from crashguard.step.checkpoint import (
    CheckpointError,
    latest_intact,
    list_checkpoints,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((4,), float(step))}, "step": step, "rng": rng_state()}


def test_keeps_the_last_k(tmp_path: Path) -> None:
    for step in range(1, 6):
        save_checkpoint(tmp_path, _state(step), step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004.pt", "step-00000005.pt"]
    assert load_checkpoint(tmp_path / "step-00000005.pt")["step"] == 5


def test_latest_intact_skips_a_damaged_newest(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _state(1), 1, keep=3)
    good = save_checkpoint(tmp_path, _state(2), 2, keep=3)
    (tmp_path / "step-00000003.pt").write_bytes(good.read_bytes()[:1000])  # torn by some other writer
    path, state = latest_intact(tmp_path)
    assert path == good and state["step"] == 2


def test_rng_state_round_trips_through_weights_only_load(tmp_path: Path) -> None:
    import random

    import numpy as np

    save_checkpoint(tmp_path, {"model": {}, "step": 1, "rng": rng_state()}, 1, keep=1)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng(load_checkpoint(tmp_path / "step-00000001.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import torch
    from crashguard.step import checkpoint as ck
    folder = Path(sys.argv[1])
    ck.save_checkpoint(folder, {"model": {"w": torch.ones(4)}, "step": 1}, 1, keep=3)
    def slow_fsync(fd):  # the new checkpoint's bytes are written; stall before the rename
        (folder / "writing").touch()
        time.sleep(60)
    os.fsync = slow_fsync
    ck.save_checkpoint(folder, {"model": {"w": torch.zeros(2**20)}, "step": 2}, 2, keep=3)
""")


def test_kill_during_a_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], env=child_env())
    try:
        deadline = time.monotonic() + 60
        while not (folder / "writing").exists():
            assert child.poll() is None and time.monotonic() < deadline, "writer ended early"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000001.pt"]
    assert list(folder.glob(".step-00000002.pt.*.tmp"))  # the half-finished write is there, but not listed
    _, state = latest_intact(folder)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(4))
    save_checkpoint(folder, {"model": {}, "step": 3}, 3, keep=3)
    assert not list(folder.glob("*.tmp"))  # cleaned by the next write


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_checkpoints(tmp_path: Path) -> tuple[Path, list[Path]]:
    marker = tmp_path / "pwned"
    zipped = tmp_path / "step-00000009.pt"
    torch.save({"model": _Evil(marker), "step": 9}, zipped)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"model": _Evil(marker), "step": 9}, protocol=2))
    return marker, [zipped, raw]


def test_malicious_pickle_is_refused_without_running(evil_checkpoints: tuple[Path, list[Path]]) -> None:
    marker, files = evil_checkpoints
    for path in files:
        with pytest.raises(CheckpointError, match="refused, not a weights-only checkpoint"):
            load_checkpoint(path)
    assert not marker.exists()
    assert latest_intact(files[0].parent) is None


@pytest.mark.slow
def test_cli_refuses_malicious_checkpoints(tmp_path: Path, write_config: Callable[..., Path],
                                          evil_checkpoints: tuple[Path, list[Path]]) -> None:
    marker, files = evil_checkpoints
    config = write_config()
    train = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--resume", str(files[0]),
                       "--no-supervise", cwd=tmp_path)
    assert train.returncode == 2
    assert "refused, not a weights-only checkpoint" in train.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()
    infer = crashguard("infer", "--checkpoint", str(files[1]), "--input", str(tmp_path), cwd=tmp_path)
    assert infer.returncode == 2 and "refused" in infer.stderr
    assert not marker.exists()


def test_a_snapshot_shares_no_tensor_and_keeps_a_state_dicts_metadata() -> None:
    from crashguard.step.checkpoint import snapshot, tensor_bytes

    model = torch.nn.BatchNorm1d(3)
    state = {"model": model.state_dict(), "step": 4, "rng": (1, [2.0, torch.ones(2)])}
    copied, nbytes = snapshot(state)
    assert nbytes == tensor_bytes(state) > 0
    assert copied["model"]._metadata == state["model"]._metadata  # module versions, as torch.save keeps them
    with torch.no_grad():
        model.weight.add_(1.0)
    assert torch.equal(copied["model"]["weight"], torch.ones(3))  # the live weights moved on, the copy did not
    assert copied["step"] == 4 and torch.equal(copied["rng"][1][1], torch.ones(2))
    assert copied["rng"][1][1].data_ptr() != state["rng"][1][1].data_ptr()
