"""torchrun with 2 ranks on CPU (gloo): coordinated OOM back-off, identical weights, kill of a rank and resume,
checkpoint-and-stop reaching every rank. Real processes under the real torchrun (torch.distributed.run)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from locations import CHILDREN
from training_helpers import child_env, crashguard, events, records

from crashguard.step.distributed import DistEnv, NoDeviceForRank, dist_backend, weights_digest
from crashguard.training.check import DataError
from crashguard.training.data import EpochSampler, ShardedEpochSampler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(target: list[str], *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), *target, "train", *args, "--no-progress"]


def train_args(config: Path, name: str, *extra: str) -> list[str]:
    return ["--config", str(config), "--runs-dir", "runs", "--run-name", name, *extra]


def status(run_dir: Path, rank: int) -> dict:
    return json.loads((run_dir / ("status.json" if rank == 0 else f"status.rank{rank}.json")).read_text())


def wait_for(predicate: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.stderr.read()[-3000:] if process.stderr else "exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def final_digests(run_dir: Path) -> list[str]:
    return events(run_dir, "checkpoint")[-1]["weights_sha256"]


def test_torchrun_environment_is_detected() -> None:
    assert DistEnv.detect({}) is None
    env = DistEnv.detect({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert env == DistEnv(rank=3, world_size=4, local_rank=1, local_world_size=2)


def test_backend_is_nccl_on_cuda_unless_gloo_is_chosen() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert dist_backend(cpu, {}) == "gloo" and dist_backend(cpu, {"CRASHGUARD_DIST_BACKEND": "nccl"}) == "gloo"
    assert dist_backend(cuda, {}) == "nccl"
    assert dist_backend(cuda, {"CRASHGUARD_DIST_BACKEND": " GLOO "}) == "gloo"  # ranks may share a GPU
    with pytest.raises(NoDeviceForRank, match="CRASHGUARD_DIST_BACKEND='mpi': expected nccl or gloo"):
        dist_backend(cuda, {"CRASHGUARD_DIST_BACKEND": "mpi"})


def test_more_ranks_than_gpus_share_them_with_gloo_and_are_refused_with_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    from crashguard.step.distributed import pick_rank_device

    chosen: list[int] = []  # a machine with one GPU (none can exist here: torch.cuda answers as such a machine)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    env = DistEnv(rank=1, world_size=2, local_rank=1, local_world_size=2)
    monkeypatch.delenv("CRASHGUARD_DIST_BACKEND", raising=False)
    with pytest.raises(NoDeviceForRank, match=r"local rank 1 has no GPU of its own \(1 visible.*--nproc_per_node 1"):
        pick_rank_device("auto", env)
    monkeypatch.setenv("CRASHGUARD_DIST_BACKEND", "gloo")
    assert pick_rank_device("auto", env) == torch.device("cuda", 0) and chosen == [0]
    assert pick_rank_device("cpu", env) == torch.device("cpu")


def test_sharded_sampler_splits_each_step_of_the_single_process_order() -> None:
    single = EpochSampler(size=11, seed=5)
    ranks = [ShardedEpochSampler(size=11, seed=5, step_batch=4, rank=r, world_size=2) for r in (0, 1)]
    assert all(isinstance(r, torch.utils.data.DistributedSampler) for r in ranks)
    for epoch, start_step in ((0, 0), (3, 1)):
        single.set_epoch(epoch, start_step * 4)
        for r in ranks:
            r.set_epoch(epoch, start_step * 4)
        shares = [list(r) for r in ranks]
        assert [len(r) for r in ranks] == [len(x) for x in shares] == [2 * (2 - start_step)] * 2
        # step k: rank 0 takes the first 2 of the single process's 4 samples, rank 1 the next 2 (11 // 4 = 2 steps)
        expected = list(single)[:(2 - start_step) * 4]
        rebuilt = [i for k in range(2 - start_step) for x in shares for i in x[2 * k:2 * k + 2]]
        assert rebuilt == expected
    with pytest.raises(DataError):
        ShardedEpochSampler(size=11, seed=5, step_batch=3, rank=0, world_size=2)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["raised", "rlimit"])
def test_oom_on_rank_1_only_backs_off_every_rank_and_keeps_the_run(kind: str, tmp_path: Path,
                                                                   write_config: Callable[..., Path]) -> None:
    config = write_config(train={"roi_size": [16, 16, 16], "epochs": 3, "effective_batch": 4, "micro_batch": 2})
    env = {**child_env(), "CRASHGUARD_TEST_OOM_RANK": "1", "CRASHGUARD_TEST_OOM_ABOVE": "1",
           "CRASHGUARD_TEST_OOM_KIND": kind, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(torchrun([str(CHILDREN / "ddp_oom_child.py")], *train_args(config, "ddp")),
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ddp"
    backoff = events(run_dir, "oom_backoff")
    assert len(backoff) == 1 and backoff[0]["ranks"] == [1] and backoff[0]["step"] == 0
    if kind == "raised":
        assert "cuda_oom" in backoff[0]["failure"] and "injected in backward" in backoff[0]["failure"]
    else:  # a real allocation failure under RLIMIT_AS, in rank 1's backward
        assert "cpu_oom" in backoff[0]["failure"] and "can't allocate memory" in backoff[0]["failure"]
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == list(range(1, 7))  # 9 cases // 4 = 2 steps x 3 epochs: none lost
    assert all((s["micro_batch"], s["accumulation"], s["world_size"]) == (1, 2, 2) for s in steps)
    for rank in (0, 1):  # both ranks switched, not only the one that failed
        st = status(run_dir, rank)
        assert (st["state"], st["rank"], st["world_size"], st["step"]) == ("finished", rank, 2, 6)
        assert (st["micro_batch"], st["accumulation"]) == (1, 2)
    digests = final_digests(run_dir)
    assert len(digests) == 2 and digests[0] == digests[1]  # each rank hashed its own weights: bit-identical
    checkpoint = torch.load(run_dir / "checkpoints" / "step-00000006.pt", weights_only=True)
    assert {int(s["step"]) for s in checkpoint["optimizer"]["state"].values()} == {6}  # 6 optimizer steps
    assert checkpoint["effective_batch"] == 4 and checkpoint["world_size"] == 2
    net = torch.nn.Module()
    net.state_dict = lambda: checkpoint["model"]  # type: ignore[method-assign]
    assert weights_digest(net) == digests[0]  # the checkpoint holds those weights

    if kind != "raised":
        return  # the comparisons below do not depend on how the OOM came about; run them once
    # The same run started at micro-batch 1 on both ranks, no OOM: the back-off redid step 1 from scratch and
    # then ran exactly this, so the weights are bit-identical.
    config_mb1 = write_config("mb1.json", train={"roi_size": [16, 16, 16], "epochs": 3, "effective_batch": 4,
                                                 "micro_batch": 1})
    plain = subprocess.run(torchrun(["-m", "crashguard"], *train_args(config_mb1, "mb1")), cwd=tmp_path,
                           env=child_env(), capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert final_digests(tmp_path / "runs" / "mb1") == digests

    # One process, micro-batch 2, no OOM: the same global batches of 4, so the same losses up to summation order.
    reference = crashguard("train", *train_args(config, "single", "--no-supervise"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = [s["loss"] for s in records(tmp_path / "runs" / "single", "step")]
    assert [s["loss"] for s in steps] == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_kill_of_one_rank_stops_the_other_cleanly_and_both_resume(killed: int, tmp_path: Path,
                                                                  write_config: Callable[..., Path]) -> None:
    config = write_config(train={"roi_size": [16, 16, 16], "epochs": 60, "val_every_epochs": 1000},
                          checkpoint={"every_steps": 5, "keep": 2})
    run_dir = tmp_path / "runs" / "victim"
    survivor_rank = 1 - killed
    run = subprocess.Popen(torchrun(["-m", "crashguard"], *train_args(config, "victim")), cwd=tmp_path,
                           env=child_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "step-00000010.pt").exists(), run)
        victim = status(run_dir, killed)
        assert victim["state"] == "running" and victim["world_size"] == 2
        killed_at = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)  # what the kernel's OOM killer does
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    # torchrun SIGKILLs a survivor that has not ended 30 s after its SIGTERM; exit code 4 is the survivor's own.
    assert run.returncode != 0 and time.monotonic() - killed_at < 30, stderr[-3000:]
    assert re.search(rf"rank\s*: {survivor_rank} \(local_rank: {survivor_rank}\)\s*\n\s*exitcode\s*: 4 ", stderr), \
        stderr[-3000:]
    survivor = status(run_dir, survivor_rank)
    assert survivor["state"] == "failed" and "another rank is gone" in survivor["exit_cause"], survivor
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    resumed_from = int(checkpoints[-1].name[5:13])
    assert resumed_from >= 10 and Path(survivor["checkpoint"]) in checkpoints
    if survivor_rank == 0:  # rank 0 saved the last completed step on its own
        assert resumed_from == survivor["step"] and Path(survivor["checkpoint"]) == checkpoints[-1]
    # A surviving rank 1 may have lost its peer between rank 0's write and their digest exchange: it then still
    # names the previous checkpoint, and the resume below takes the newest intact one all the same.
        assert [r["event"] for r in events(run_dir)][-1] == "peer_lost"

    resumed = subprocess.run(torchrun(["-m", "crashguard"], *train_args(config, "victim")), cwd=tmp_path,
                             env=child_env(), capture_output=True, text=True, timeout=150)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resume = events(run_dir, "resume")
    assert len(resume) == 1 and resume[0]["step"] == resumed_from
    assert resumed.stderr.count(f"resumed from step-{resumed_from:08d}.pt") == 2  # both ranks loaded it
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == list(range(1, 121))  # each step once: none lost, none doubled
    assert [status(run_dir, r)["state"] for r in (0, 1)] == ["finished", "finished"]
    digests = final_digests(run_dir)
    assert digests[0] == digests[1]

    reference = crashguard("train", *train_args(config, "reference", "--no-supervise"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = [s["loss"] for s in records(tmp_path / "runs" / "reference", "step")]
    assert [s["loss"] for s in steps] == pytest.approx(expected, rel=1e-5)  # resumed exactly where it stopped


@pytest.mark.slow
def test_checkpoint_and_stop_sent_to_rank_1_stops_both_ranks_at_the_same_step(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"roi_size": [16, 16, 16], "epochs": 200, "val_every_epochs": 1000},
                          checkpoint={"every_steps": 1000, "keep": 2})
    run_dir = tmp_path / "runs" / "ctl"
    run = subprocess.Popen(torchrun(["-m", "crashguard"], *train_args(config, "ctl")), cwd=tmp_path,
                           env=child_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: (run_dir / "status.rank1.json").exists() and status(run_dir, 1)["step"] >= 2, run)
        (run_dir / "control.rank1" / "c1.json").write_text(json.dumps({"id": "c1", "action": "cleanup"}))
        (run_dir / "control.rank1" / "s1.json").write_text(json.dumps({"id": "s1", "action": "checkpoint_and_stop"}))
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, stderr[-3000:]
    cleanup = json.loads((run_dir / "control.rank1" / "c1.done.json").read_text())
    assert cleanup["ok"] and cleanup["report"]["pid"] == status(run_dir, 1)["pid"]  # rank 1 cleaned itself
    answer = json.loads((run_dir / "control.rank1" / "s1.done.json").read_text())
    ranks = [status(run_dir, r) for r in (0, 1)]
    assert [s["state"] for s in ranks] == ["stopped", "stopped"] and ranks[0]["step"] == ranks[1]["step"] < 400
    assert answer["ok"] and answer["report"]["checkpoint"] == ranks[0]["checkpoint"] == ranks[1]["checkpoint"]
    assert Path(ranks[0]["checkpoint"]).name == f"step-{ranks[0]['step']:08d}.pt"
    assert Path(ranks[0]["checkpoint"]).exists()


@pytest.mark.slow
def test_the_sidecars_registry_and_controls_reach_every_rank(tmp_path: Path,
                                                              write_config: Callable[..., Path]) -> None:
    from crashguard.runs.control import cleanup_runs, stop_run
    from crashguard.runs.registry import Registry

    config = write_config(train={"roi_size": [16, 16, 16], "epochs": 200, "val_every_epochs": 1000},
                          checkpoint={"every_steps": 1000, "keep": 2})
    runs_dir = tmp_path / "runs"
    run = subprocess.Popen(torchrun(["-m", "crashguard"], *train_args(config, "world")), cwd=tmp_path,
                           env=child_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        registry = Registry(runs_dir)
        wait_for(lambda: len(registry.infos()) == 2 and all(i.step and i.step >= 1 for i in registry.infos()), run)
        infos = sorted(registry.infos(), key=lambda i: i.rank)
        assert [(i.name, i.rank, i.world_size, i.alive) for i in infos] == [("world", 0, 2, True),
                                                                             ("world", 1, 2, True)]
        assert infos[0].pid != infos[1].pid and all(i.tree_rss and i.peak_rss for i in infos)  # per-rank memory
        cleaned = cleanup_runs(runs_dir, names=["world"], timeout=30, own_cleanup=False)
        assert sorted((r.rank, r.pid, r.ok) for r in cleaned.runs) == [(0, infos[0].pid, True),
                                                                      (1, infos[1].pid, True)]
        stopped = stop_run(runs_dir, "world", timeout=30)
        assert stopped.ok and stopped.state == "stopped" and not stopped.signalled, stopped.message
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, stderr[-3000:]
    ranks = [status(runs_dir / "world", r) for r in (0, 1)]
    assert [s["state"] for s in ranks] == ["stopped", "stopped"] and ranks[0]["step"] == ranks[1]["step"]
    assert stopped.checkpoint == ranks[0]["checkpoint"] and Path(ranks[0]["checkpoint"]).exists()


@pytest.mark.slow
def test_oom_at_micro_batch_one_on_rank_1_stops_every_rank_with_a_checkpoint(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"roi_size": [16, 16, 16], "epochs": 3, "effective_batch": 4, "micro_batch": 2})
    env = {**child_env(), "CRASHGUARD_TEST_OOM_RANK": "1", "CRASHGUARD_TEST_OOM_ABOVE": "0"}  # nothing fits
    result = subprocess.run(torchrun([str(CHILDREN / "ddp_oom_child.py")], *train_args(config, "hopeless")),
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert len(re.findall(r"exitcode\s*: 3 ", result.stderr)) == 2, result.stderr[-3000:]  # both ranks: OOM exit
    run_dir = tmp_path / "runs" / "hopeless"
    backoff = events(run_dir, "oom_backoff")
    assert [(e["micro_batch"], e["ranks"]) for e in backoff] == [(1, [1])]
    for rank in (0, 1):
        st = status(run_dir, rank)
        assert st["state"] == "failed" and "at the smallest batch" in st["exit_cause"] and st["step"] == 0
        assert st["checkpoint"].endswith("step-00000000.pt") and Path(st["checkpoint"]).exists()


def test_the_sidecars_run_events_name_the_rank() -> None:
    from dataclasses import replace

    from crashguard.runs.registry import RunInfo
    from crashguard.sidecar.core import _run_event_message

    info = RunInfo(name="ddp", dir="/runs/ddp", pid=42, rank=1, world_size=2, state="crashed", alive=False, step=7,
                   epoch=0, micro_batch=1, accumulation=2, loss=0.5, peak_rss=1, tree_rss=None, vram=None,
                   last_event=None, exit_cause="killed by signal 9 (SIGKILL)", config="/c.json", checkpoint=None,
                   started=1.0, updated=2.0)
    assert _run_event_message("crashed", info) == \
        "Run ddp rank 1/2 stopped unexpectedly at step 7 (killed by signal 9, SIGKILL)"
    assert _run_event_message("crashed", replace(info, rank=0, world_size=1)).startswith("Run ddp stopped")


@pytest.mark.slow
def test_ranks_wait_for_rank_0s_download_longer_than_a_collective_may_wait(tmp_path: Path) -> None:
    """data.download under torchrun: rank 0 downloads (and checks) alone; the others wait in heartbeats, so a
    download far longer than the collectives' timeout (3 s here, 8 s of work) ends with every rank going on."""
    env = dict(child_env(), CRASHGUARD_DIST_TIMEOUT="3")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(CHILDREN / "rank0_wait_child.py"), "8", str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(f.read_text()) for f in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(line["rank"] for line in lines) == [0, 1]
    assert all(line["got"] == "downloaded" for line in lines)
