"""The extension's own modules run from Python tests: tests/extension/launch_argv.ts bundled with esbuild."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from locations import REPO

ESBUILD = REPO / "node_modules" / ".bin" / "esbuild"
PROBE = REPO / "bundled" / "tool" / "probe.py"
LAUNCHER = REPO / "bundled" / "tool" / "sidecar.py"


@pytest.fixture(scope="module")
def launch_argv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """launch_argv.ts bundled for node (skips without node and the npm packages)."""
    if not ESBUILD.exists() or shutil.which("node") is None:
        pytest.skip("node and the npm packages (npm ci) are needed to run the extension's modules")
    out = tmp_path_factory.mktemp("bundle") / "launch_argv.js"
    subprocess.run([str(ESBUILD), str(REPO / "tests" / "extension" / "launch_argv.ts"), "--bundle", "--platform=node",
                    "--format=cjs", f"--outfile={out}", "--log-level=warning"], check=True, cwd=REPO)
    return out


@functools.cache
def _own(launch_argv: Path, probe: str, launcher: str) -> dict[str, list[str]]:
    given = {"own": {"probe": probe, "launcher": launcher}}
    done = subprocess.run(["node", str(launch_argv), json.dumps(given)], capture_output=True, text=True, check=True)
    out: dict[str, list[str]] = json.loads(done.stdout)
    return out


def own_argv(launch_argv: Path, probe: Path = PROBE, launcher: Path = LAUNCHER) -> dict[str, list[str]]:
    """What follows the interpreter when the extension runs its own files (python.ts): `probe`, `monitor` and
    `monitorDevelopment` (the launcher with --development)."""
    return _own(launch_argv, str(probe), str(launcher))
