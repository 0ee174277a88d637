"""`python -m benchmarks.sidecar_cost`: a short real run measures the sidecar and the bare loops in the same window."""

from __future__ import annotations

import json
import subprocess

import pytest


@pytest.mark.slow
def test_bench_sidecar_measures_the_sidecar_beside_bare_psutil_loops(python: str, repo_root) -> None:
    done = subprocess.run([python, "-m", "benchmarks.sidecar_cost", "--seconds", "4", "--warmup", "1",
                           "--interval-ms", "500", "--json"], cwd=repo_root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode in (0, 1), done.stderr  # 1: a target missed on a busy machine, still a measurement
    figures = json.loads(done.stdout)
    assert figures["samples"] >= 5 and figures["guarded_runs"] == 1
    assert figures["cpu_percent_of_one_core"] > 0 and 20 < figures["rss_mb_max"] < 200
    assert set(figures["bare_loops"]) == {"psutil", "proc"}
    for loop in figures["bare_loops"].values():
        assert loop["rss_mb_max"] > 5
        assert loop["sidecar_cpu_ratio"] is None or loop["sidecar_cpu_ratio"] > 0  # None: too short to register
    assert figures["targets"]["cpu_ratio_to_bare_loop"] == 1.5 and figures["targets"]["rss_mb"] == 45.0
    assert figures["status_request_ms_median"] is not None and figures["sample_gap_s_max"] < 2.0


@pytest.mark.slow
def test_bench_sidecar_with_clients_measures_the_shared_monitor_with_one_and_n_windows(python: str, repo_root) -> None:
    done = subprocess.run([python, "-m", "benchmarks.sidecar_cost", "--clients", "3", "--seconds", "3", "--warmup",
                           "1", "--interval-ms", "500", "--json"], cwd=repo_root, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode in (0, 1), done.stderr  # 1: the ratio missed on a busy machine, still a measurement
    figures = json.loads(done.stdout)
    assert figures["1"]["cpu_percent_of_one_core"] > 0 and figures["3"]["cpu_percent_of_one_core"] > 0
    assert len(figures["3"]["samples_per_window"]) == 3 and min(figures["3"]["samples_per_window"]) >= 3
    assert figures["separate"]["rss_mb_max"] > figures["3"]["rss_mb_max"]  # three processes against one
    assert figures["targets"]["shared_cpu_ratio"] == 1.2 and figures["shared_cpu_ratio"] > 0
