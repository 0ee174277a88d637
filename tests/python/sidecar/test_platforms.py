"""The memory monitor ships for macOS too (the darwin .vsix): without Linux's /proc, /sys and pidfd it must serve,
not crash — RAM from psutil, no cgroup limit, no memory pressure (with the reason), no GPU — and a run it cannot
prove registered (the proof reads /proc/<pid>/fd) is never cleaned up, stopped or signalled. Simulated here on
Linux by children/non_linux_monitor.py, which hides /proc and /sys from crashguard's code (not from psutil, which
has its own implementation per platform) and removes pidfd and SO_PEERCRED.

Without peer credentials there is no shared monitor: the starter (`--ensure`) says so with its own exit code,
creating nothing, and the window runs a monitor of its own over stdio (the test above serves exactly that)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from locations import CHILDREN, REPO
from sidecar_session import sidecar
from trainer_helpers import StartTrainer

from crashguard.sidecar import protocol as p
from crashguard.sidecar.endpoint import build_id
from crashguard.sidecar.main import EXIT_NO_SHARED_MONITOR, EXIT_UNSAFE

COMMAND = [sys.executable, str(CHILDREN / "non_linux_monitor.py")]
LAUNCHER = REPO / "bundled" / "tool" / "sidecar.py"
# The extension's own start of the monitor (`python -I bundled/tool/sidecar.py ...`, here from the checkout), on a
# Python whose socket module has no SO_PEERCRED (as on macOS): the attribute goes before crashguard is imported.
WITHOUT_PEERCRED = """
import runpy, socket, sys
if sys.argv[1] == "drop":
    del socket.SO_PEERCRED
sys.argv = [sys.argv[2], "--development", *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
NO_SHARED = "no shared memory monitor on this platform: this platform has no peer credentials (SO_PEERCRED)"


def launch(xdg: Path, *args: str, drop: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-c", WITHOUT_PEERCRED, "drop" if drop else "keep", str(LAUNCHER),
                           *args], env={**os.environ, "XDG_RUNTIME_DIR": str(xdg)}, cwd=xdg, capture_output=True,
                          text=True, timeout=60, check=False)


async def test_the_monitor_serves_without_proc_sys_or_pidfd(runs_dir: Path, start_trainer: StartTrainer) -> None:
    trainer = start_trainer("mac-run")
    async with sidecar({"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}, command=COMMAND) as s:
        samples = await s.wait_samples(3)
        last = samples[-1]
        assert 0 < last["ram"]["percent"] <= 100 and last["ram"]["total"] > 0
        assert last["ram"]["limitSource"] == "physical"  # no cgroup to read
        assert last["pressure"] is None and "pressure" in last["pressureReason"]
        assert last["topProcesses"], "psutil still lists the heaviest processes"
        [run] = [r for r in last["runs"] if r["name"] == "mac-run"]
        assert run["alive"] is False, "a registration that cannot be proved is not treated as a live run"
        cleanup = await s.request(p.CLEANUP, {"timeoutMs": 2000})
        assert cleanup["runs"] == [] and cleanup["sidecar"] is not None
        stop = await s.request(p.STOP_RUN, {"run": "mac-run", "timeoutMs": 2000})
        assert stop["ok"] is False and stop["signalled"] is False
        await s.wait_samples(2)  # still sampling after the requests
    assert trainer.poll() is None, "the run was never signalled"


@pytest.mark.parametrize("mode", ["--ensure", "--daemon"])
def test_without_peer_credentials_the_starter_says_no_shared_monitor_with_its_own_code(tmp_path: Path,
                                                                                         mode: str) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    done = launch(xdg, mode)
    assert done.returncode == EXIT_NO_SHARED_MONITOR == 7, done.stderr
    assert NO_SHARED in done.stderr and done.stdout == ""
    assert list(xdg.iterdir()) == [], "nothing created: no runtime folder, socket, lock or log"


def test_the_cli_starter_on_a_non_linux_kernel_says_the_same() -> None:
    done = subprocess.run([*COMMAND, "--ensure"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == EXIT_NO_SHARED_MONITOR and NO_SHARED in done.stderr and done.stdout == ""


def test_a_socket_that_is_not_this_users_stays_a_refusal_of_its_own(tmp_path: Path) -> None:
    """With peer credentials, a planted socket (a symlink to a file) is refused as unsafe: exit 5, not the
    platform's 7, so a window never takes it for "no shared monitor here" (extension/src/monitorTransport.ts)."""
    xdg = tmp_path / "xdg"
    (xdg / "crashguard").mkdir(mode=0o700, parents=True)
    xdg.chmod(0o700)
    planted = tmp_path / "planted"
    planted.write_text("")
    (xdg / "crashguard" / f"monitor-{build_id(development=True)}.sock").symlink_to(planted)
    done = launch(xdg, "--ensure", drop=False)
    assert done.returncode == EXIT_UNSAFE and "refusing to start or use the memory monitor" in done.stderr
    assert "is not a socket" in done.stderr and NO_SHARED not in done.stderr
