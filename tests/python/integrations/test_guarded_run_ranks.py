"""guarded_run under the real torchrun (2 ranks, gloo): a stop request that reaches one rank stops every rank at the
same boundary, rank 0 writes the checkpoint, the ranks compare their weights and all name that checkpoint; SIGHUP
is taken. The same lifecycle `crashguard train` runs on (its torchrun drills are in training/test_distributed.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from integration_helpers import child_env, events
from locations import CHILDREN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_stop_asked_of_one_rank_stops_every_rank_at_the_same_step_with_rank_0s_checkpoint(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                             str(CHILDREN / "guarded_run_ranks_child.py"), str(runs)],
                            cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = sorted((json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")),
                   key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    checkpoint = runs / "ranks" / "checkpoints" / "step-00000003.pt"
    for rank in ranks:
        assert (rank["state"], rank["exit_code"], rank["message"]) == ("stopped", 0, "stopped on request at step 3")
        assert rank["checkpoint"] == str(checkpoint) and rank["took_hangup"]
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == [checkpoint.name]  # rank 0 alone wrote it
    statuses = [json.loads((runs / "ranks" / name).read_text()) for name in ("status.json", "status.rank1.json")]
    assert [(s["state"], s["step"], s["checkpoint"]) for s in statuses] == [("stopped", 3, str(checkpoint))] * 2
    history = events(runs / "ranks")  # rank 0's: the run's one event log
    assert [(e["event"], e["step"]) for e in history] == [("checkpoint", 3), ("stopped", 3)]
    digests = history[0]["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]  # the gradients were all-reduced: equal weights
