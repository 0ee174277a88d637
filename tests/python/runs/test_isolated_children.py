"""What Crash Guard starts in a training folder never imports from it (issue 19): the folder plants packages named
crashguard/, python_backend/ and psutil/ that write a marker file when imported, and the crash watchdog of a
guarded run, the supervised trainer of `crashguard train` and the resume command it records all run from there
for real, do their job, and leave no marker. The command shapes (`-I -m`, the `-I -c` boot, torchrun) are checked
directly too."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from training_helpers import events

from crashguard.runs.resume import crashguard_command, isolated_torchrun
from crashguard.util import isolated
from crashguard.util.isolated import PACKAGE_ROOT, module_command, own_import_path

PLANTED = ("crashguard", "python_backend", "psutil")


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """A training folder whose own crashguard/, python_backend/ and psutil/ would write MARKER if imported."""
    folder = tmp_path / "project"
    marker = tmp_path / "MARKER"
    for name in PLANTED:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f'open({str(marker)!r}, "a").write("{name} ran\\n")\n')
    return folder, marker


def plain_env() -> dict[str, str]:
    """The environment without PYTHONPATH: the children find crashguard where an installed one is found."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_the_command_is_python_I_m_where_an_isolated_interpreter_finds_this_crashguard() -> None:
    assert module_command("crashguard.runs.watchdog", needs=("psutil",)) == \
        [sys.executable, "-I", "-m", "crashguard.runs.watchdog"]  # the project venv: an editable install
    assert crashguard_command() == [sys.executable, "-I", "-m", "crashguard"]


def test_elsewhere_the_boot_pins_this_processes_import_path_without_the_working_folder(
        planted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, marker = planted
    # An interpreter whose isolated path lacks this crashguard (a user-site or PYTHONPATH install).
    monkeypatch.setattr(isolated, "isolated_sys_path", lambda python: ("/nonexistent",))
    monkeypatch.syspath_prepend(str(folder))  # even this process's own path naming the folder is left out...
    monkeypatch.chdir(folder)  # ...when it is the working folder
    command = module_command("crashguard.runs.watchdog", needs=("psutil",))
    assert command[:3] == [sys.executable, "-I", "-c"]
    path = own_import_path()
    assert path[0] == str(PACKAGE_ROOT) and str(folder) not in path and "" not in path
    done = subprocess.run([*command, "--help"], cwd=folder, env=dict(plain_env(), PYTHONPATH=str(folder)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "--create-time" in done.stdout
    assert not marker.exists(), marker.read_text()


def test_torchrun_commands_start_their_workers_isolated() -> None:
    python = "/venv/bin/python"
    cg = crashguard_command()
    assert isolated_torchrun([python, "/venv/bin/torchrun", "--standalone", "--nproc_per_node", "2", "-m",
                              "crashguard", "train", "--config", "c.json"]) == \
        [python, "/venv/bin/torchrun", "--standalone", "--nproc_per_node", "2", "--no-python", *cg, "train",
         "--config", "c.json"]
    module = isolated_torchrun([python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "crashguard",
                                "train"])
    assert module == [*module_command("torch.distributed.run", needs=("torch",)), "--nproc_per_node", "2",
                      "--no-python", *cg, "train"]
    assert module[1] == "-I"  # torchrun itself imports nothing from the folder either
    assert isolated_torchrun([python, "/venv/bin/torchrun", "--no-python", "crashguard", "train"]) == \
        [python, "/venv/bin/torchrun", "--no-python", *cg, "train"]  # not looked up on Resume's PATH
    for unchanged in ([python, "/venv/bin/torchrun", "--nproc_per_node", "2", "train.py", "-m", "crashguard"],
                      [python, "/venv/bin/torchrun", "--no-python", "/usr/bin/env", "crashguard"],
                      [python, "train.py"]):
        assert isolated_torchrun(unchanged) == unchanged


GUARDED_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from crashguard import guarded_run
    model = torch.nn.Linear(2, 1)
    with guarded_run("planted", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     runs_dir=sys.argv[1]) as run:
        while True:
            run.step(torch.ones(1, 2), lambda b: model(b).sum())
            time.sleep(0.05)
""")


def test_the_watchdog_of_a_guarded_run_imports_nothing_from_the_runs_folder(
        planted: tuple[Path, Path], tmp_path: Path) -> None:
    folder, marker = planted
    script = tmp_path / "elsewhere" / "train.py"  # the user's script lives elsewhere; the run works in `folder`
    script.parent.mkdir()
    script.write_text(GUARDED_SCRIPT)
    runs = folder / "runs"
    run = subprocess.Popen([sys.executable, str(script), str(runs)], cwd=folder, env=plain_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    status_file = runs / "planted" / "status.json"
    try:
        wait_until(lambda: read_status(status_file).get("step", 0) >= 2, 60, "the run to register and step")
        watchdogs = [p for p in psutil.Process(run.pid).children() if "crashguard.runs.watchdog" in p.cmdline()]
        assert len(watchdogs) == 1 and watchdogs[0].cmdline()[1] == "-I", [p.cmdline() for p in watchdogs]
        assert watchdogs[0].cwd() == str(folder)
        os.kill(run.pid, signal.SIGKILL)
        wait_until(lambda: read_status(status_file).get("state") == "crashed", 30, "the watchdog to record it")
    finally:
        run.kill()
        run.wait(timeout=30)
    assert read_status(status_file)["exit_cause"] == "killed by signal 9 (SIGKILL)"
    assert not marker.exists(), marker.read_text()


@pytest.mark.slow
def test_a_supervised_train_and_its_recorded_resume_import_nothing_from_the_folder(
        planted: tuple[Path, Path], write_config: Callable[..., Path]) -> None:
    folder, marker = planted
    config = write_config(train={"epochs": 6}, checkpoint={"every_steps": 1, "keep": 2})
    run_dir = folder / "runs" / "p"
    # Started as the extension starts it: the supervisor isolated; its trainer child must be too.
    supervisor = subprocess.Popen([sys.executable, "-I", "-m", "crashguard", "train", "--config", str(config),
                                   "--runs-dir", "runs", "--run-name", "p", "--no-progress"],
                                  cwd=folder, env=plain_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
    try:
        wait_until(lambda: (run_dir / "checkpoints" / "step-00000002.pt").exists() or supervisor.poll() is not None,
                   300, "the second checkpoint")
        assert supervisor.poll() is None, supervisor.stderr.read() if supervisor.stderr else ""
        trainer = read_status(run_dir / "status.json")["pid"]
        assert trainer != supervisor.pid and psutil.Process(trainer).cmdline()[:4] == crashguard_command()
        os.kill(trainer, signal.SIGKILL)
        assert supervisor.wait(timeout=60) == 128 + signal.SIGKILL
    finally:
        supervisor.kill()
        supervisor.wait(timeout=30)
    status = read_status(run_dir / "status.json")
    assert status["state"] == "crashed"
    command = status["resume_command"]
    assert command["argv"][:5] == [sys.executable, "-I", "-m", "crashguard", "train"]
    assert command["argv"][-2:] == ["--resume", "auto"] and command["cwd"] == str(folder)
    assert not marker.exists(), marker.read_text()

    resumed = subprocess.run([*command["argv"], "--no-progress"], cwd=command["cwd"], env=plain_env(),
                             capture_output=True, text=True, timeout=600)  # exactly what Resume runs
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert events(run_dir, "resume")
    assert read_status(run_dir / "status.json")["state"] == "finished"
    assert not marker.exists(), marker.read_text()


@pytest.mark.slow
def test_a_torchrun_runs_recorded_resume_starts_its_ranks_isolated(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    config = write_config(train={"epochs": 1})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Started the way docs used to show (torchrun's own -m), from a folder without planted packages yet.
    first = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                            "127.0.0.1", "--master_port", str(port), "-m", "crashguard", "train", "--config",
                            str(config), "--runs-dir", "runs", "--run-name", "ddp", "--no-progress"],
                           cwd=folder, env=plain_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    command = read_status(folder / "runs" / "ddp" / "status.json")["resume_command"]
    argv = command["argv"]
    assert argv[:3] == [sys.executable, "-I", "-m"] and "--no-python" in argv
    assert argv[argv.index("--no-python") + 1:][:4] == [sys.executable, "-I", "-m", "crashguard"]
    marker = tmp_path / "MARKER"
    for name in PLANTED:  # the folder gains packages of its own before the resume
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f'open({str(marker)!r}, "a").write("{name} ran\\n")\n')
    resumed = subprocess.run(argv, cwd=command["cwd"], env=plain_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not marker.exists(), marker.read_text()
