"""The monitor's interpreter runs no site hooks from the workspace (issue 21, class 10).

A trusted folder's own `.venv` is the folder's code: a `.pth` file in its site-packages whose `import` line writes a
marker ran at the interpreter probe and at the monitor's start, despite `-I`. The extension now starts both with
`-I -S` (extension/src/python.ts); the argv here is the extension's own (tests/extension/launch_argv.ts). The probe
still reports what it must (the venv, where packages are found through the .pth files' directory lines), and the
monitor serves, from the bundle as the .vsix ships it and from the checkout in development mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from launch_helpers import own_argv
from locations import REPO
from sidecar_session import sidecar

BUNDLER = REPO / "scripts" / "package" / "bundle_python.py"
HOOK = 'import os; open({marker!r}, "a").write("a .pth file of the workspace ran\\n")\n'


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundled")
    subprocess.run([sys.executable, str(BUNDLER), "--out", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture
def workspace_venv(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder's own .venv: a .pth whose import line writes a marker, and a .pth naming a directory of packages
    (this test environment's site-packages: pygls and psutil for the development monitor, torch for the probe)."""
    folder = tmp_path / "cloned-repo"
    venv = folder / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    marker = tmp_path / "MARKER"
    (site_packages / "zz-hook.pth").write_text(HOOK.format(marker=str(marker)))
    (site_packages / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return folder, python, marker


def test_the_attack_is_real_with_minus_i_alone(workspace_venv: tuple[Path, Path, Path]) -> None:
    folder, python, marker = workspace_venv
    subprocess.run([str(python), "-I", "-c", "pass"], cwd=folder, check=True)
    assert marker.exists()  # what the probe and the monitor ran before -S


def test_the_probe_runs_no_site_hook_and_still_reports_the_venv(
        launch_argv: Path, workspace_venv: tuple[Path, Path, Path]) -> None:
    folder, python, marker = workspace_venv
    argv = own_argv(launch_argv)["probe"]
    assert argv[:2] == ["-I", "-S"]
    done = subprocess.run([str(python), *argv], cwd=folder, capture_output=True, text=True, check=True)
    info = json.loads(done.stdout)
    assert not marker.exists(), marker.read_text()
    assert info["executable"] == str(python) and info["virtualEnv"] is True
    assert Path(info["prefix"]) == python.parent.parent
    # torch is found where `python -I` would import it from: through deps.pth's directory line, read, not run.
    assert info["found"]["torch"] == "isolated"


async def test_the_bundled_monitor_serves_and_runs_no_site_hook(
        launch_argv: Path, bundle: Path, workspace_venv: tuple[Path, Path, Path], runs_dir: Path) -> None:
    folder, python, marker = workspace_venv
    argv = own_argv(launch_argv, launcher=bundle / "tool" / "sidecar.py")["monitor"]
    assert argv == ["-I", "-S", str(bundle / "tool" / "sidecar.py")]
    async with sidecar({"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}, cwd=str(folder),
                       command=[str(python), *argv]) as s:
        sample = (await s.wait_samples(1))[0]
        assert 0 < sample["ram"]["percent"] <= 100
    assert not marker.exists(), marker.read_text()


async def test_the_development_monitor_finds_its_packages_without_running_site_hooks(
        launch_argv: Path, workspace_venv: tuple[Path, Path, Path], runs_dir: Path) -> None:
    folder, python, marker = workspace_venv
    argv = own_argv(launch_argv)["monitorDevelopment"]
    assert argv[:2] == ["-I", "-S"] and argv[-1] == "--development"
    async with sidecar({"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}, cwd=str(folder),
                       command=[str(python), *argv]) as s:
        sample = (await s.wait_samples(1))[0]
        assert 0 < sample["ram"]["percent"] <= 100
    assert not marker.exists(), marker.read_text()
