"""The sidecar as the extension ships it (bundled/: the launcher, crashguard's sidecar part and its pinned
dependencies): it serves from any Python >= 3.10 with nothing installed, never imports from the folder it runs in,
and refuses a client that speaks another protocol version with one clear error."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pytest_lsp.client import LanguageClient
from shared_monitor import private_host, window
from sidecar_session import sidecar

from crashguard.sidecar import protocol as p
from crashguard.sidecar.handshake import PROTOCOL_VERSION
from crashguard.sidecar.server import plain_json_converter

REPO = Path(__file__).resolve().parents[3]
BUNDLER = REPO / "scripts" / "package" / "bundle_python.py"
PYENV = Path.home() / ".pyenv" / "versions"
PLANTED = 'open({marker!r}, "w").write("workspace code ran")\n'


def _interpreters() -> list[str]:
    """Interpreters other than the venv's: the oldest supported one, and one without psutil or pygls."""
    found = sorted(str(p) for p in PYENV.glob("3.10.*/bin/python3.10")) if PYENV.is_dir() else []
    found += [p for p in ("/usr/bin/python3",) if Path(p).exists()]
    return found or [sys.executable]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundled")
    subprocess.run([sys.executable, str(BUNDLER), "--out", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture
def hostile_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A folder that plants a crashguard package (and a psutil) which would write a marker if imported."""
    folder = tmp_path / "cloned-repo"
    marker = tmp_path / "MARKER"
    for package in ("crashguard", "psutil", "pygls"):
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(PLANTED.format(marker=str(marker)))
    return folder, marker


def test_the_bundle_holds_the_sidecar_and_nothing_of_training(bundle: Path) -> None:
    backend = bundle / "libs" / "crashguard"
    assert {d.name for d in backend.iterdir() if d.is_dir()} == {"util", "guard", "monitor", "runs", "sidecar"}
    assert sorted(f.name for f in backend.iterdir() if f.is_file()) == ["__init__.py"]
    for dependency in ("pygls", "lsprotocol", "attrs", "cattrs", "psutil", "pynvml.py", "exceptiongroup"):
        assert (bundle / "libs" / dependency).exists(), dependency
    assert not list(bundle.rglob("__pycache__"))


@pytest.mark.parametrize("python", _interpreters())
async def test_bundled_sidecar_serves_from_any_python_and_imports_nothing_from_its_folder(
        bundle: Path, python: str, hostile_folder: tuple[Path, Path], runs_dir: Path) -> None:
    folder, marker = hostile_folder
    command = [python, "-I", "-S", str(bundle / "tool" / "sidecar.py")]  # as the extension starts it
    settings = {"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}
    async with sidecar(settings, cwd=str(folder), command=command,
                       env={"PYTHONPATH": str(folder)}) as s:  # -I ignores PYTHONPATH too
        sample = (await s.wait_samples(1))[0]
        assert 0 < sample["ram"]["percent"] <= 100
        announced = s.initialize_result.capabilities.experimental["crashGuard"]
        assert announced["protocolVersion"] == PROTOCOL_VERSION
        status = await s.request(p.STATUS, {})
        assert status["ram"]["total"] > 0
    assert not marker.exists(), "the sidecar imported code from the folder it ran in"


@pytest.mark.slow
@pytest.mark.parametrize("python", _interpreters())
async def test_the_bundled_launcher_starts_the_shared_monitor_from_any_python(
        bundle: Path, python: str, hostile_folder: tuple[Path, Path], runs_dir: Path) -> None:
    """What a window runs: `--ensure` starts the monitor detached (on this interpreter, isolated from the folder it
    runs in), prints where it listens, and the window connects to the socket."""
    folder, marker = hostile_folder
    with private_host() as host:
        done = subprocess.run([python, "-I", str(bundle / "tool" / "sidecar.py"), "--ensure"], cwd=folder,
                              env={**host.env, "PYTHONPATH": str(folder)}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        host.pids.add(found["pid"])
        assert found["started"] and found["python"] == subprocess.run(
            [python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip()
        async with window(found["socket"], {"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}) as w:
            sample = (await w.wait_samples(1))[0]
            assert 0 < sample["ram"]["percent"] <= 100
    assert not marker.exists(), "the monitor imported code from the folder it was started in"


async def test_a_client_of_another_protocol_version_gets_one_clear_error(bundle: Path, tmp_path: Path) -> None:
    client = LanguageClient(converter_factory=plain_json_converter)
    await client.start_io(sys.executable, "-I", "-S", str(bundle / "tool" / "sidecar.py"), cwd=str(tmp_path))
    try:
        with pytest.raises(Exception, match=r"protocol mismatch: the client speaks protocol 1, this sidecar .* "
                                            rf"speaks protocol {PROTOCOL_VERSION}"):
            await asyncio.wait_for(client.initialize_session(lsp.InitializeParams(
                capabilities=lsp.ClientCapabilities(), initialization_options={"protocolVersion": 1})), 30)
    finally:
        server = client._server
        if server is not None and server.returncode is None:
            server.terminate()
        await asyncio.wait_for(client.stop(), 15)


def test_the_launcher_refuses_an_interpreter_older_than_3_10(bundle: Path) -> None:
    old = sorted(PYENV.glob("3.[6-9].*/bin/python3")) if PYENV.is_dir() else []
    if not old:
        pytest.skip("no Python older than 3.10 on this machine")
    done = subprocess.run([str(old[0]), "-I", "-S", str(bundle / "tool" / "sidecar.py")], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 3
    assert "needs Python 3.10 or newer" in done.stderr


def test_the_probe_describes_an_interpreter_without_running_package_code(hostile_folder: tuple[Path, Path]) -> None:
    folder, marker = hostile_folder
    probe = REPO / "bundled" / "tool" / "probe.py"
    done = subprocess.run([sys.executable, "-I", "-S", str(probe)], cwd=folder, capture_output=True, text=True,
                          timeout=30, check=True)
    info = json.loads(done.stdout)
    assert info["version"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    assert info["crashguard"] is not None  # the project venv has the training backend, where -I finds it
    assert info["found"] == {"crashguard": "isolated", "torch": "isolated", "monai": "isolated"}
    assert info["crashguardScript"] == str(Path(sys.executable).parent / "crashguard")
    assert not marker.exists()


def test_a_packaged_launcher_refuses_a_foreign_crashguard_even_when_asked_for_development(
        bundle: Path, tmp_path: Path, hostile_folder: tuple[Path, Path]) -> None:
    folder, marker = hostile_folder
    (folder / "python_backend" / "crashguard").mkdir(parents=True)  # a "checkout" in the workspace: not the launcher's
    (folder / "python_backend" / "crashguard" / "__init__.py").write_text(
        PLANTED.format(marker=str(marker)))
    packaged = tmp_path / "extension" / "bundled"
    shutil.copytree(bundle, packaged)
    shutil.rmtree(packaged / "libs" / "crashguard")  # now `import crashguard` finds the venv's: a foreign one
    # -I without -S: the venv's site-packages (and its editable crashguard) are on the path, so the launcher's own
    # origin check is what refuses it (with -S, as the extension starts it, that crashguard is not even found).
    done = subprocess.run([sys.executable, "-I", str(packaged / "tool" / "sidecar.py"), "--development"], cwd=folder,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 4, done.stderr
    assert f"not from {packaged / 'libs'}" in done.stderr
    assert not marker.exists()


async def test_a_development_host_runs_the_monitor_from_the_checkout_the_launcher_sits_in(
        hostile_folder: tuple[Path, Path], runs_dir: Path) -> None:
    """A contributor's F5 ("Run Crash Guard Extension") from a fresh clone: no `npm run bundle` needed."""
    folder, marker = hostile_folder
    command = [sys.executable, "-I", "-S", str(REPO / "bundled" / "tool" / "sidecar.py"), "--development"]
    async with sidecar({"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}, cwd=str(folder),
                       command=command) as s:
        sample = (await s.wait_samples(1))[0]
        assert 0 < sample["ram"]["percent"] <= 100
    assert not marker.exists()
