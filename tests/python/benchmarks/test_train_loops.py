"""`bench-train` on a tiny run: every loop on the named device, and the steps each loses to the OOM counted from
what the run did (updates applied, updates in the state it leaves behind), not written by the benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.train_loops_bench import run_benchmark


@pytest.mark.slow
def test_steps_lost_are_counted_from_the_runs_and_the_result_names_the_device(tmp_path: Path,
                                                                               data_root: Path) -> None:
    (tmp_path / "data").symlink_to(data_root)  # read only: 9 training cases, 2 steps of 4 per epoch
    result = run_benchmark(roi=16, steps=4, repeats=1, oom_steps=4, oom_step=3, threads=1, work_dir=tmp_path,
                           device="cpu", plain_checkpoint_every=2)
    setup = result["setup"]
    assert (setup["device"], setup["torch"], setup["torch_threads"]) == ("cpu", torch.__version__, 1)
    tp = result["throughput"]
    assert all(len(tp[f"{k}_steps_per_s"]) == 1 and tp[f"{k}_steps_per_s"][0] > 0
               for k in ("plain", "guarded", "accelerate"))
    rows = {r["loop"].split()[0]: r for r in result["oom"]}
    # The OOM strikes the 4th step of 4 (from then on a forward of more than 2 samples fails).
    guard = rows["crashguard"]
    assert (guard["survived"], guard["updates_applied"], guard["steps_kept"], guard["steps_lost"]) == (True, 4, 4, 0)
    assert guard["retries"] == [{"oom_after_updates": 3, "resumed_from_update": 3, "micro_batch": 2,
                                 "accumulation": 2}]
    assert (guard["samples_forwarded"], guard["samples_kept"], guard["effective_batch_after"]) == (16, 16, 4)
    # The plain loop dies in its 4th step; its checkpoint of step 2 is what is left: step 3 is lost.
    plain = rows["plain"]
    assert (plain["survived"], plain["updates_applied"], plain["steps_kept"], plain["steps_lost"]) == (False, 3, 2, 1)
    assert not plain["reached_target"] and "can't allocate memory" in plain["note"]
    # accelerate reruns its function from the start at 2 x 2: the 3 updates of the first attempt are lost.
    acc = rows["accelerate"]
    assert (acc["survived"], acc["updates_applied"], acc["steps_kept"], acc["steps_lost"]) == (True, 7, 4, 3)
    assert acc["retries"] == [{"oom_after_updates": 3, "resumed_from_update": 0, "micro_batch": 2,
                               "accumulation": 2}]
    assert (acc["samples_forwarded"], acc["samples_kept"], acc["effective_batch_after"]) == (28, 16, 4)
    assert "on cpu" in acc["note"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        run_benchmark(device="cuda", work_dir=tmp_path)
