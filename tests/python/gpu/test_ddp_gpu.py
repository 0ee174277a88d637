"""torchrun with 2 ranks on GPUs: NCCL with a GPU per rank where there are two, else both ranks on the one GPU with
gloo (CRASHGUARD_DIST_BACKEND=gloo; NCCL is then not exercised, and the table says so). An out-of-memory on rank 1
only, inside backward, must back off every rank together and keep bit-identical weights."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpu_helpers import gpu_config
from locations import CHILDREN
from training_helpers import child_env, events, records

pytestmark = pytest.mark.gpu


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.gpu_line("DDP, 2 ranks: NCCL on 2 GPUs (else gloo on 1 GPU): OOM on rank 1 backs off both")
def test_two_ranks_back_off_together_on_gpus(cuda: Any, gpu_data: Path, tmp_path: Path,
                                             record_property: Callable[[str, object], None]) -> None:
    gpus = cuda.cuda.device_count()
    backend = "nccl" if gpus >= 2 else "gloo"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(gpu_config(gpu_data, roi_size=[64, 64, 64], effective_batch=8, micro_batch=4)))
    env = {**child_env(), "CRASHGUARD_DIST_BACKEND": backend, "CRASHGUARD_TEST_OOM_RANK": "1",
           "CRASHGUARD_TEST_OOM_ABOVE": "2", "CRASHGUARD_TEST_OOM_KIND": "raised"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(CHILDREN / "ddp_oom_child.py"), "train", "--config",
               str(config), "--runs-dir", "runs", "--run-name", "ddp", "--no-progress"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr.count(f"backend {backend}, device cuda:") == 2
    run_dir = tmp_path / "runs" / "ddp"
    backoff = events(run_dir, "oom_backoff")
    assert len(backoff) == 1 and backoff[0]["ranks"] == [1] and backoff[0]["step"] == 0
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 2
    assert all((s["micro_batch"], s["accumulation"], s["world_size"]) == (2, 2, 2) for s in steps)
    digests = events(run_dir, "checkpoint")[-1]["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    where = f"NCCL on {gpus} GPUs" if backend == "nccl" else "gloo, both ranks on the one GPU (NCCL not tested)"
    record_property("figures", f"{where}: back-off 4 -> 2 on every rank at step 1 after an OOM raised in rank 1's "
                               f"backward, {len(steps)} steps, identical weights on both ranks")
