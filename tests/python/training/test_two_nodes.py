"""The two-node drill, simulated on one host: two torchrun agents (`--nnodes 2`, one rank each, static rendezvous on
localhost), a kill -9 of one rank in the middle of the run, then both agents started again with `--resume auto`:
both ranks resume from the same checkpoint and the run finishes with every step once, its losses those of an
uninterrupted run. (Two ranks under one agent: tests/python/training/test_distributed.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_distributed import free_port, status, train_args, wait_for
from training_helpers import child_env, crashguard, events, records

EPOCHS = 12  # 9 training cases, a global batch of 4 (2 a rank): 2 steps an epoch, 24 steps


def agent(node: int, port: int, config: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
            "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
            "-m", "crashguard", "train", *train_args(config, name, *extra), "--no-progress"]


def start_nodes(tmp_path: Path, config: Path, name: str, *extra: str) -> list[subprocess.Popen[str]]:
    port = free_port()
    return [subprocess.Popen(agent(node, port, config, name, *extra), cwd=tmp_path, env=child_env(),
                             stderr=subprocess.PIPE, text=True, start_new_session=True) for node in (0, 1)]


def finish(nodes: list[subprocess.Popen[str]], timeout: float) -> list[str]:
    errors = []
    try:
        for node in nodes:
            errors.append(node.communicate(timeout=timeout)[1])
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_two_nodes_lose_a_rank_and_both_resume_from_the_same_checkpoint(killed: int, tmp_path: Path,
                                                                       write_config: Callable[..., Path]) -> None:
    config = write_config(train={"roi_size": [16, 16, 16], "epochs": EPOCHS, "val_every_epochs": 1000},
                          checkpoint={"every_steps": 3, "keep": 2})
    run_dir = tmp_path / "runs" / "nodes"
    nodes = start_nodes(tmp_path, config, "nodes")
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "step-00000006.pt").exists(), nodes[0], timeout=180)
        victim = status(run_dir, killed)
        assert victim["state"] == "running" and victim["world_size"] == 2
        os.kill(victim["pid"], signal.SIGKILL)  # a node's rank dies as the kernel's OOM killer kills it
    finally:
        errors = finish(nodes, timeout=90)
    assert all(node.returncode != 0 for node in nodes), errors
    survivor = status(run_dir, 1 - killed)
    assert survivor["state"] == "failed" and "another rank is gone" in survivor["exit_cause"], survivor
    newest = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
    resumed_from = int(newest.name[5:13])
    assert resumed_from >= 6

    nodes = start_nodes(tmp_path, config, "nodes", "--resume", "auto")
    errors = finish(nodes, timeout=300)
    assert [node.returncode for node in nodes] == [0, 0], [e[-2000:] for e in errors]
    for node, err in enumerate(errors):  # each node's rank loaded that very checkpoint
        assert f"resumed from {newest.name} at step {resumed_from}" in err, (node, err[-2000:])
    assert [e["step"] for e in events(run_dir, "resume")] == [resumed_from]
    assert [s["step"] for s in records(run_dir, "step")] == list(range(1, 2 * EPOCHS + 1))  # each step once
    assert [status(run_dir, rank)["state"] for rank in (0, 1)] == ["finished", "finished"]
    digests = events(run_dir, "checkpoint")[-1]["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]

    reference = crashguard("train", *train_args(config, "reference", "--no-supervise"), cwd=tmp_path, timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = [s["loss"] for s in records(tmp_path / "runs" / "reference", "step")]
    assert [s["loss"] for s in records(run_dir, "step")] == pytest.approx(expected, rel=1e-5)
