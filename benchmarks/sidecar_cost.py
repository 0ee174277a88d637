"""`python -m benchmarks.sidecar_cost`: the running sidecar's cost, measured from outside as a real client over stdio,
side by side with the alternative a user would pick: a bare psutil loop.

`--clients N` (N >= 2) measures the shared monitor instead (one per user and host, every window a connection to its
unix socket): its CPU with one window connected, then with N, in the same run (the target: N windows cost at most
TARGET_SHARED_RATIO x one), and, side by side, what N windows cost before it existed: N stdio sidecars, one each.

Starts `python -m crashguard serve`, guards one (or --runs N) real registered run, lets it sample at the
given interval for --seconds, and reports the server's CPU (% of one core), its RSS, the in-server cost of a
sample, the sample rate, and how fast a status request is answered while sampling goes on.

In the same window two bare loops sample at the same interval what the sidecar reads (`virtual_memory()`, the RSS
of each guarded run's process tree, the heaviest processes every 10 s), without the protocol, the registry, levels,
forecasts, history or the escalation ladder:
- "psutil": a bare psutil loop, as a user's own script would do it (`children(recursive=True)`); the target is the
  sidecar at most TARGET_CPU_RATIO x its CPU;
- "proc": the same reads through Crash Guard's own `monitor.processes` (the /proc walk the sidecar uses), so the
  ratio to it is the sidecar's own overhead over the bare reads (reported, no target).
The machine is quiet there (far from the critical threshold), so the sidecar samples at the configured interval.

Then the reaction to a spike (--spike-rounds, needs a writable memory cgroup: tests/python/helpers/memory_groups.py):
in a 2 GiB memory group this script creates and removes (the group's limit is the machine's, as in a container), the
sidecar and a loop reading the same RAM figure (`read_ram`, the group's) at the fixed configured interval (the
sidecar before issue 22) watch a hog growing 1 GiB/s to 90 % of the limit, past a critical threshold 0.8 GiB below
it; a few rounds, each starting at another phase of the fixed loop's ticks. For each: when RAM crossed critical
(interpolated between the sidecar's samples on both sides) and how long after it each of the two saw it. The target
(issue 22): the sidecar sees it within SPIKE_TARGET_S (the schedule's 0.1 s floor, plus a tick) in the median.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crashguard.util.json_io import json_text

TARGET_CPU_RATIO = 1.5  # the sidecar's CPU over the bare psutil loop's, measured in the same window
TARGET_RSS_MB = 45.0
SPIKE_TARGET_S = 0.15  # median delay from RAM crossing critical to the sidecar's first critical sample
SPIKE_LIMIT = 2 * 2**30  # the spike's memory group
SPIKE_TO_LIMIT = int(0.8 * 2**30)  # critical this far below the group's limit
SPIKE_RATE_MB = 1024  # the hog's growth, MiB/s
TARGET_SHARED_RATIO = 1.2  # the shared monitor's CPU with N windows over its CPU with one

# A guarded run: registers with RunHook and takes a step every 0.5 s until killed.
_RUN = """
import sys, time
from crashguard.runs import RunHook
hook = RunHook(sys.argv[1], runs_dir=sys.argv[2])
hook.start()
step = 0
while True:
    time.sleep(0.5)
    step += 1
    hook.step_boundary(step=step)
"""

# The bare loops: argv[1] is the walk ("psutil": psutil's children(recursive=True) and process_iter; "proc": the
# sidecar's own functions), argv[2] the interval (s), the rest the pids of the guarded runs.
_BARE = """
import sys, time
import psutil
walk, interval, pids = sys.argv[1], float(sys.argv[2]), [int(a) for a in sys.argv[3:]]
if walk == "proc":
    from crashguard.monitor.processes import top_processes, tree_rss
else:
    def tree_rss(pid):
        try:
            root = psutil.Process(pid)
            return sum(p.memory_info().rss for p in (root, *root.children(recursive=True)))
        except psutil.Error:
            return None
    def top_processes(count):
        procs = [p for p in psutil.process_iter(["pid", "name", "memory_info"]) if p.info["memory_info"]]
        return sorted(procs, key=lambda p: p.info["memory_info"].rss, reverse=True)[:count]
top_at, next_at = -1e9, time.monotonic()
while True:
    psutil.virtual_memory()
    for pid in pids:
        tree_rss(pid)
    now = time.monotonic()
    if now - top_at >= 10.0:
        top_processes(5)
        top_at = now
    next_at += interval
    time.sleep(max(0.0, next_at - time.monotonic()))
"""
BARE_WALKS = ("psutil", "proc")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sidecar_cost",
                                     description="measure the running sidecar's CPU and RSS over stdio")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time (default 60)")
    parser.add_argument("--interval-ms", type=int, default=1000, help="sample interval (default 1000)")
    parser.add_argument("--runs", type=int, default=1, help="registered runs to guard (default 1)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (default 3)")
    parser.add_argument("--spike-rounds", type=int, default=5,
                        help="spikes to react to, in a memory group (default 5; 0: none)")
    parser.add_argument("--clients", type=int, default=1,
                        help="N >= 2: the shared monitor with 1 window, then N windows over its socket, beside N stdio "
                             "sidecars (one per window, as before); default 1: the stdio sidecar beside bare loops")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def _client_capabilities() -> tuple[Any, str]:
    """VS Code's real capabilities when pytest-lsp (a dev dependency) ships them: structuring that object is part
    of the server's start-up cost. Empty capabilities otherwise."""
    from lsprotocol import types as lsp
    from lsprotocol.converters import get_converter

    try:
        from importlib.resources import files

        text = (files("pytest_lsp") / "clients" / "visual_studio_code_v1.65.2.json").read_text()
    except (ImportError, OSError):
        return lsp.ClientCapabilities(), "empty"
    data = json.loads(text)["capabilities"]
    return get_converter().structure(data, lsp.ClientCapabilities), "VS Code 1.65.2"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _drain(stream: Any) -> None:
    while await stream.read(65536):
        pass


async def _measure(args: argparse.Namespace, runs_dir: Path, bare_pids: dict[str, int]) -> dict[str, Any]:
    import asyncio

    import psutil
    from lsprotocol import types as lsp
    from pygls.lsp.client import LanguageClient

    from crashguard.sidecar import protocol as p
    from crashguard.sidecar.server import plain_json_converter

    client = LanguageClient("crashguard-bench", "1", converter_factory=plain_json_converter)
    samples: list[tuple[float, dict[str, Any]]] = []

    @client.feature(p.SAMPLE)
    def on_sample(ls: Any, params: Any) -> None:
        samples.append((time.monotonic(), params))

    @client.feature(lsp.WINDOW_LOG_MESSAGE)
    def on_log(ls: Any, params: Any) -> None:
        pass  # the server's own log lines; not part of the measurement

    await client.start_io(sys.executable, "-m", "crashguard", "serve")
    assert client._server is not None and client._server.stderr is not None
    server = psutil.Process(client._server.pid)
    bare = {walk: psutil.Process(pid) for walk, pid in bare_pids.items()}
    drain = asyncio.ensure_future(_drain(client._server.stderr))  # a full stderr pipe would block the server
    try:
        capabilities, capabilities_from = _client_capabilities()
        await client.initialize_async(lsp.InitializeParams(
            capabilities=capabilities,
            initialization_options={"settings": {"sampleIntervalMs": args.interval_ms,
                                                 "runsDirectory": str(runs_dir)}}))
        client.initialized(lsp.InitializedParams())
        await asyncio.sleep(args.warmup)

        first = len(samples)
        cpu0 = server.cpu_times()
        bare_cpu0 = {walk: proc.cpu_times() for walk, proc in bare.items()}
        wall0 = time.monotonic()
        rss: list[int] = []
        bare_rss: dict[str, list[int]] = {walk: [] for walk in bare}
        while time.monotonic() - wall0 < args.seconds:  # sampling only: the bare loops answer no requests
            rss.append(server.memory_info().rss)
            for walk, proc in bare.items():
                bare_rss[walk].append(proc.memory_info().rss)
            await asyncio.sleep(1.0)
        wall = time.monotonic() - wall0
        cpu1 = server.cpu_times()
        bare_cpu1 = {walk: proc.cpu_times() for walk, proc in bare.items()}
        rss.append(server.memory_info().rss)
        measured = samples[first:]
        latencies: list[float] = []
        for _ in range(5):  # then requests, answered while sampling goes on
            started = time.monotonic()
            await client.protocol.send_request_async(p.STATUS, {})
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.7)
        rss.append(server.memory_info().rss)
        runs_seen = len(measured[-1][1]["runs"]) if measured else 0
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
        drain.cancel()

    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    bare_cpu = {w: (bare_cpu1[w].user + bare_cpu1[w].system) - (bare_cpu0[w].user + bare_cpu0[w].system) for w in bare}
    costs = [s["costMs"] for _, s in measured]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(measured)]
    return {
        "seconds": round(wall, 1),
        "interval_ms": args.interval_ms,
        "samples": len(measured),
        "samples_per_second": round(len(measured) / wall, 3),
        "guarded_runs": runs_seen,
        "client_capabilities": capabilities_from,
        "cpu_percent_of_one_core": round(100.0 * cpu / wall, 3),
        "rss_mb_max": round(max(rss) / 2**20, 1),
        "rss_mb_last": round(rss[-1] / 2**20, 1),
        "bare_loops": {walk: {"cpu_percent_of_one_core": round(100.0 * bare_cpu[walk] / wall, 3),
                              "rss_mb_max": round(max(bare_rss[walk]) / 2**20, 1),
                              "sidecar_cpu_ratio": round(cpu / bare_cpu[walk], 2) if bare_cpu[walk] > 0 else None}
                       for walk in bare},
        "sample_gap_s_max": round(max(gaps), 3) if gaps else None,
        "sample_cost_ms_mean": round(statistics.fmean(costs), 3) if costs else None,
        "sample_cost_ms_p95": round(_percentile(costs, 0.95), 3) if costs else None,
        "status_request_ms_median": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "status_request_ms_max": round(max(latencies) * 1000, 1) if latencies else None,
    }

def _cpu(proc: Any) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _over(procs: list[Any], seconds: float) -> dict[str, float]:
    """CPU (% of one core, all of `procs` together) and the largest RSS (sum) over `seconds`."""
    import asyncio

    cpu0 = sum(_cpu(p) for p in procs)
    wall0 = time.monotonic()
    rss: list[int] = []
    while time.monotonic() - wall0 < seconds:
        rss.append(sum(p.memory_info().rss for p in procs))
        await asyncio.sleep(1.0)
    wall = time.monotonic() - wall0
    return {"cpu_percent_of_one_core": round(100.0 * (sum(_cpu(p) for p in procs) - cpu0) / wall, 3),
            "rss_mb_max": round(max(rss) / 2**20, 1), "seconds": round(wall, 1)}


def _window_client(samples: list[dict[str, Any]]) -> Any:
    from lsprotocol import types as lsp
    from pygls.lsp.client import LanguageClient

    from crashguard.sidecar import protocol as p
    from crashguard.sidecar.server import plain_json_converter

    client = LanguageClient("crashguard-bench", "1", converter_factory=plain_json_converter)

    @client.feature(p.SAMPLE)
    def on_sample(ls: Any, params: Any) -> None:
        samples.append(params)

    @client.feature(lsp.WINDOW_LOG_MESSAGE)
    def on_log(ls: Any, params: Any) -> None:
        pass

    return client


async def _initialize(client: Any, settings: dict[str, Any]) -> None:
    from lsprotocol import types as lsp

    capabilities, _ = _client_capabilities()
    await client.initialize_async(lsp.InitializeParams(capabilities=capabilities,
                                                       initialization_options={"settings": settings}))
    client.initialized(lsp.InitializedParams())


async def _socket_window(path: str, settings: dict[str, Any], samples: list[dict[str, Any]]) -> Any:
    """One window of the shared monitor: a pygls client over its own connection to the socket."""
    import asyncio

    from pygls.io_ import run_async

    client = _window_client(samples)
    reader, writer = await asyncio.open_unix_connection(path)
    client.protocol.set_writer(writer)
    task = asyncio.ensure_future(run_async(stop_event=client._stop_event, reader=reader, protocol=client.protocol))
    await _initialize(client, settings)
    return client, writer, task


async def _measure_shared(args: argparse.Namespace, runs_dir: Path) -> dict[str, Any]:
    import asyncio

    import psutil

    settings = {"sampleIntervalMs": args.interval_ms, "runsDirectories": [str(runs_dir)]}
    xdg = tempfile.mkdtemp(prefix="cg-bench-", dir="/tmp")  # a private runtime folder: never the user's monitor
    os.chmod(xdg, 0o700)
    started = subprocess.run([sys.executable, "-m", "crashguard", "serve", "--ensure", "--idle-grace", "5"],
                             env={**os.environ, "XDG_RUNTIME_DIR": xdg}, capture_output=True, text=True, check=True)
    found = json.loads(started.stdout.strip().splitlines()[-1])
    monitor = psutil.Process(found["pid"])
    windows: list[Any] = []
    streams: list[list[dict[str, Any]]] = []
    try:
        figures: dict[str, Any] = {}
        for count in (1, args.clients):
            while len(windows) < count:
                streams.append([])
                windows.append(await _socket_window(found["socket"], settings, streams[-1]))
            await asyncio.sleep(args.warmup)
            first = [len(s) for s in streams]
            costs_from = len(streams[0])
            figures[f"{count}"] = await _over([monitor], args.seconds)
            figures[f"{count}"]["samples_per_window"] = [len(s) - n for s, n in zip(streams, first, strict=True)]
            costs = [s["costMs"] for s in streams[0][costs_from:]]
            figures[f"{count}"]["sample_cost_ms_mean"] = round(statistics.fmean(costs), 3) if costs else None
        for client, writer, task in windows:
            await client.shutdown_async(None)
            client.exit(None)
            writer.close()
            client._stop_event.set()
            await asyncio.wait_for(task, 10)
    finally:
        with contextlib.suppress(psutil.Error):
            monitor.kill()
        shutil.rmtree(xdg, ignore_errors=True)

    # Before: every window started its own sidecar over stdio.
    clients: list[Any] = []
    try:
        for _ in range(args.clients):
            client = _window_client([])
            await client.start_io(sys.executable, "-m", "crashguard", "serve")
            clients.append(client)
            await _initialize(client, settings)
        await asyncio.sleep(args.warmup)
        figures["separate"] = await _over([psutil.Process(c._server.pid) for c in clients], args.seconds)
        for client in clients:
            await client.shutdown_async(None)
            client.exit(None)
    finally:
        for client in clients:
            await client.stop()
    return figures


def run_shared(args: argparse.Namespace) -> int:
    import asyncio

    logging.getLogger("pygls").setLevel(logging.WARNING)
    runs_dir = Path(tempfile.mkdtemp(prefix="crashguard-bench-"))
    child = subprocess.Popen([sys.executable, "-c", _RUN, "bench-run-0", str(runs_dir)])
    try:
        deadline = time.monotonic() + 30
        while not any(runs_dir.glob("*/status.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        figures = asyncio.run(_measure_shared(args, runs_dir))
    finally:
        child.kill()
        child.wait()
        shutil.rmtree(runs_dir, ignore_errors=True)
    one, many, separate = figures["1"], figures[str(args.clients)], figures["separate"]
    ratio = many["cpu_percent_of_one_core"] / one["cpu_percent_of_one_core"] if one["cpu_percent_of_one_core"] else None
    before = separate["cpu_percent_of_one_core"] / many["cpu_percent_of_one_core"] \
        if many["cpu_percent_of_one_core"] else None
    ok = ratio is not None and ratio <= TARGET_SHARED_RATIO
    figures["shared_cpu_ratio"] = round(ratio, 2) if ratio is not None else None
    figures["separate_over_shared"] = round(before, 2) if before is not None else None
    figures["targets"] = {"shared_cpu_ratio": TARGET_SHARED_RATIO, "ok": ok}
    if args.json:
        print(json_text(figures))
        return 0 if ok else 1
    n = args.clients
    print(f"shared memory monitor over its unix socket, {one['seconds']} s each at {args.interval_ms} ms, "
          "guarding 1 run")
    print(f"  1 window     CPU {one['cpu_percent_of_one_core']} % of one core, RSS {one['rss_mb_max']} MB, "
          f"in-server sample cost {one['sample_cost_ms_mean']} ms")
    print(f"  {n} windows    CPU {many['cpu_percent_of_one_core']} % of one core, RSS {many['rss_mb_max']} MB, "
          f"in-server sample cost {many['sample_cost_ms_mean']} ms, samples per window {many['samples_per_window']}")
    print(f"  ratio        {figures['shared_cpu_ratio']} (target <= {TARGET_SHARED_RATIO}: {'ok' if ok else 'MISSED'})")
    print(f"  before: {n} stdio sidecars, one per window: CPU {separate['cpu_percent_of_one_core']} % of one core, "
          f"RSS {separate['rss_mb_max']} MB in all ({figures['separate_over_shared']}x the shared monitor's CPU)")
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    import asyncio  # here, so that importing the CLI does not load asyncio (see serve.py on ssl)

    logging.getLogger("pygls").setLevel(logging.WARNING)  # the client side logs every message at INFO
    runs_dir = Path(tempfile.mkdtemp(prefix="crashguard-bench-"))
    children = [subprocess.Popen([sys.executable, "-c", _RUN, f"bench-run-{i}", str(runs_dir)])
                for i in range(args.runs)]
    try:
        deadline = time.monotonic() + 30
        while sum(1 for _ in runs_dir.glob("*/status.json")) < args.runs and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [str(child.pid) for child in children]
        bare = {walk: subprocess.Popen([sys.executable, "-c", _BARE, walk, str(args.interval_ms / 1000), *pids])
                for walk in BARE_WALKS}
        children.extend(bare.values())
        figures = asyncio.run(_measure(args, runs_dir, {walk: proc.pid for walk, proc in bare.items()}))
    finally:
        for child in children:
            child.kill()
            child.wait()
        shutil.rmtree(runs_dir, ignore_errors=True)
    ratio = figures["bare_loops"]["psutil"]["sidecar_cpu_ratio"]
    cpu_ok = ratio is not None and ratio <= TARGET_CPU_RATIO
    rss_ok = figures["rss_mb_max"] <= TARGET_RSS_MB
    spike: dict[str, Any] = {"skipped": "--spike-rounds 0"}
    if args.spike_rounds > 0:
        from benchmarks.spike_reaction import measure_spike

        spike = measure_spike(args.interval_ms, args.spike_rounds, SPIKE_RATE_MB, SPIKE_TO_LIMIT, SPIKE_LIMIT,
                              SPIKE_TARGET_S)
    spike_ok = spike.get("ok", True)  # skipped (no memory group here): said, not failed
    figures["spike"] = spike
    figures["targets"] = {"cpu_ratio_to_bare_loop": TARGET_CPU_RATIO, "rss_mb": TARGET_RSS_MB, "cpu_ok": cpu_ok,
                          "rss_ok": rss_ok, "spike_seen_s": SPIKE_TARGET_S, "spike_ok": spike_ok}
    if args.json:
        print(json_text(figures))
    else:
        f = figures
        print(f"sidecar over stdio, {f['seconds']} s at {f['interval_ms']} ms, guarding {f['guarded_runs']} run(s), "
              f"client capabilities: {f['client_capabilities']}")
        print(f"  samples      {f['samples']} ({f['samples_per_second']}/s)")
        bare, proc = f["bare_loops"]["psutil"], f["bare_loops"]["proc"]
        print(f"  CPU          {f['cpu_percent_of_one_core']} % of one core; bare psutil loop "
              f"{bare['cpu_percent_of_one_core']} %: ratio {ratio} (target <= {TARGET_CPU_RATIO}: "
              f"{'ok' if cpu_ok else 'MISSED'}); the same reads through Crash Guard's /proc walk "
              f"{proc['cpu_percent_of_one_core']} %: ratio {proc['sidecar_cpu_ratio']} (the sidecar's own overhead)")
        print(f"  RSS          max {f['rss_mb_max']} MB, last {f['rss_mb_last']} MB "
              f"(target <= {TARGET_RSS_MB} MB: {'ok' if rss_ok else 'MISSED'}); bare loops {bare['rss_mb_max']} / "
              f"{proc['rss_mb_max']} MB")
        print(f"  sample gaps  max {f['sample_gap_s_max']} s")
        print(f"  sample cost  mean {f['sample_cost_ms_mean']} ms, p95 {f['sample_cost_ms_p95']} ms (in the server)")
        print(f"  status req.  median {f['status_request_ms_median']} ms, max {f['status_request_ms_max']} ms")
        if "skipped" in spike:
            print(f"  spike        skipped: {spike['skipped']}")
        else:
            print(f"  spike        {spike['rounds']} x {spike['rate_mib_s']} MiB/s in a {spike['limit_gib']} GiB "
                  f"group, critical {spike['to_limit_gib']} GiB below the limit: critical seen after the crossing: "
                  f"sidecar median {spike['sidecar_median_s']} s, max {spike['sidecar_max_s']} s (target <= "
                  f"{SPIKE_TARGET_S} s: {'ok' if spike_ok else 'MISSED'}); a loop at the fixed {f['interval_ms']} ms "
                  f"median {spike['fixed_median_s']} s, max {spike['fixed_max_s']} s")
    return 0 if cpu_ok and rss_ok and spike_ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_shared(args) if args.clients > 1 else run(args)


if __name__ == "__main__":
    sys.exit(main())
