"""The sidecar never imports torch or MONAI (~280 MB and 1.5 s), not even lazily while serving requests."""

from __future__ import annotations

import sys
from pathlib import Path

from sidecar_session import sidecar

from crashguard.sidecar import protocol as p

# Runs `python -m crashguard serve` and, when the process exits, writes the names of all loaded modules.
WRAPPER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["crashguard", "serve"]
runpy.run_module("crashguard", run_name="__main__", alter_sys=True)
"""


async def test_serving_every_request_never_imports_torch(tmp_path: Path, runs_dir: Path) -> None:
    modules_file = tmp_path / "modules.txt"
    command = [sys.executable, "-c", WRAPPER, str(modules_file)]
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": 200}, command=command) as s:
        await s.wait_samples(2)
        await s.request(p.STATUS, {})
        await s.request(p.RUNS, {})
        await s.request(p.CLEANUP, {})
        await s.request(p.PROCESS_DETAIL, {"pid": s.pid})
        await s.request(p.STOP_RUN, {"run": "none"})
        await s.request(p.HISTORY, {})
    modules = set(modules_file.read_text().split())
    assert "crashguard.sidecar.server" in modules and "pygls" in modules  # the file really is from the server
    heavy = sorted(m for m in modules if m.split(".")[0] in {"torch", "monai", "numpy", "nibabel"})
    assert heavy == []
