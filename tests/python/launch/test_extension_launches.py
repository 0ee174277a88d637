"""Every command the extension builds to start crashguard in a training environment (tasks, Emergency Cleanup without
a monitor, Start Safe Training, Resume of each kind, F5) — taken from the extension's own TypeScript modules
(tests/extension/launch_argv.ts, bundled with esbuild, fed the real probe of the interpreter) — run for real in a
trusted training folder that plants crashguard/ and python_backend/ packages writing a marker file: each does its
job and no marker appears (issue 19)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from launch_helpers import own_argv
from locations import REPO
from training_helpers import tiny_config

PLANTED = ("crashguard", "python_backend")


@pytest.fixture
def folder(tmp_path: Path, data_root: Path) -> tuple[Path, Path]:
    """A training folder with the starter config (tiny) and planted packages; the marker file beside it."""
    project = tmp_path / "project"
    marker = tmp_path / "MARKER"
    for name in PLANTED:
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f'open({str(marker)!r}, "a").write("{name} ran\\n")\n')
    (project / "config").mkdir()
    config = tiny_config(data_root, train={"epochs": 1}, checkpoint={"every_steps": 1, "keep": 2})
    (project / "config" / "safe_training.json").write_text(json.dumps(config))
    return project, marker


def commands(launch_argv: Path, project: Path, env: dict[str, str]) -> dict[str, Any]:
    probe = subprocess.run([sys.executable, *own_argv(launch_argv)["probe"]], cwd=project, capture_output=True,
                           text=True, check=True, env=env)
    given = {"probe": json.loads(probe.stdout), "runsDir": str(project / "runs"),
             "config": str(project / "config" / "safe_training.json"), "env": env}
    done = subprocess.run(["node", str(launch_argv), json.dumps(given)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def extension_env(project: Path) -> dict[str, str]:
    """The extension host's environment as a user's shell may leave it: PYTHONPATH naming the folder twice over."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return dict(env, PYTHONPATH=f":{project}/src:.", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_the_extension_builds_isolated_commands_for_the_project_venv(
        launch_argv: Path, folder: tuple[Path, Path]) -> None:
    project, _ = folder
    built = commands(launch_argv, project, extension_env(project))
    assert set(built) == {"task monitor", "task cleanup", "task train", "Emergency Cleanup without a monitor",
                          "Start Safe Training", "Resume (no recorded command)", "Resume (recorded -m python_backend)",
                          "Resume (recorded -m crashguard)", "F5"}
    for name, command in built.items():
        if name != "F5":
            assert command["argv"][:4] == [sys.executable, "-I", "-m", "crashguard"], name
    assert built["F5"]["program"] == str(Path(sys.executable).parent / "crashguard")
    assert built["F5"]["pythonArgs"] == ["-I"] and "module" not in built["F5"]


@pytest.mark.slow
def test_each_command_works_in_a_folder_that_plants_packages_and_none_imports_them(
        launch_argv: Path, folder: tuple[Path, Path]) -> None:
    project, marker = folder
    env = extension_env(project)
    built = commands(launch_argv, project, env)

    def env_of(command: dict[str, Any]) -> dict[str, str]:
        return {**env, **command["env"]}

    # The monitor runs until stopped: a few seconds of its live view.
    monitor = subprocess.Popen(built["task monitor"]["argv"], cwd=project, env=env_of(built["task monitor"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        output, errors = monitor.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        monitor.send_signal(signal.SIGINT)
        output, errors = monitor.communicate(timeout=30)
    assert "RAM" in output, errors[-2000:]

    for name in ("task cleanup", "Emergency Cleanup without a monitor"):
        done = run(built[name]["argv"], project, env_of(built[name]))
        assert done.returncode == 0 and "RAM used" in done.stdout, (name, done.stderr[-2000:])

    for name in ("task train", "Start Safe Training"):  # the same run twice: the second starts it afresh
        done = run([*built[name]["argv"], "--no-progress"], project, env_of(built[name]))
        assert done.returncode == 0, (name, done.stderr[-3000:])
    status = json.loads((project / "runs" / "tiny" / "status.json").read_text())
    assert status["state"] == "finished"
    assert status["resume_command"]["argv"][:4] == [sys.executable, "-I", "-m", "crashguard"]

    # Resume of each kind, with the run's name: `--resume auto` continues from its last checkpoint.
    for name in ("Resume (no recorded command)", "Resume (recorded -m python_backend)",
                 "Resume (recorded -m crashguard)"):
        argv = [a if a != "planted" else "tiny" for a in built[name]["argv"]]
        done = run([*argv, "--no-progress"], project, env_of(built[name]))
        assert done.returncode == 0, (name, done.stderr[-3000:])

    # F5: the resolved configuration through the real debugpy (its own launcher takes the same path: run_file).
    f5 = built["F5"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run([f5["python"], *f5["pythonArgs"], "-m", "debugpy", "--listen", f"127.0.0.1:{port}", f5["program"],
                *f5["args"], "--no-progress", "--run-name", "f5"], project, {**env, **f5["env"]})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((project / "runs" / "f5" / "status.json").read_text())["state"] == "finished"

    assert not marker.exists(), marker.read_text()


PYENV = Path.home() / ".pyenv" / "versions"
STAND_IN = ("import sys\n\ndef main():\n    print('the installed crashguard:', *sys.argv[1:])\n    return 0\n\n"
            "if __name__ == '__main__':\n    sys.exit(main())\n")
CONSOLE_SCRIPT = ("#!{python}\nimport sys\nfrom crashguard.__main__ import main\n"
                  "if __name__ == '__main__':\n    sys.exit(main())\n")


def _plain_python(minor: str) -> str | None:
    found = sorted(PYENV.glob(f"3.{minor}.*/bin/python3.{minor}")) if PYENV.is_dir() else []
    return str(found[0]) if found else None


@pytest.mark.parametrize(("minor", "prefix"), [("12", "-P"), ("10", "console script")])
def test_a_user_site_install_starts_without_the_folder_too(
        launch_argv: Path, folder: tuple[Path, Path], tmp_path: Path, minor: str, prefix: str) -> None:
    python = _plain_python(minor)
    if python is None:
        pytest.skip(f"no Python 3.{minor} outside a virtual environment on this machine")
    project, marker = folder
    # `pip install --user crashguard`, stood in for by a package that says it ran (and its console script).
    base = tmp_path / "userbase"
    package = base / "lib" / f"python3.{minor}" / "site-packages" / "crashguard"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STAND_IN)
    (base / "bin").mkdir()
    (base / "bin" / "crashguard").write_text(CONSOLE_SCRIPT.format(python=python))
    (base / "bin" / "crashguard").chmod(0o755)
    env = dict(extension_env(project), PYTHONUSERBASE=str(base))
    probe = json.loads(run([python, *own_argv(launch_argv)["probe"]], project, env).stdout)
    assert probe["found"]["crashguard"] == "userSite" and probe["crashguardScript"] == str(base / "bin" / "crashguard")
    given = {"probe": probe, "runsDir": str(project / "runs"), "config": str(project / "config" / "safe_training.json"),
             "env": env}
    built = json.loads(run(["node", str(launch_argv), json.dumps(given)], REPO, env).stdout)
    cleanup = built["Emergency Cleanup without a monitor"]
    expected = ["-P", "-m", "crashguard"] if prefix == "-P" else [str(base / "bin" / "crashguard")]
    assert cleanup["argv"][1:1 + len(expected)] == expected
    assert cleanup["env"] == {"PYTHONPATH": f"{project}/src"}  # the empty entry and "." name the working folder
    done = run(cleanup["argv"], project, {**env, **cleanup["env"]})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"the installed crashguard: cleanup --runs-dir {project / 'runs'}"
    f5 = built["F5"]
    assert f5["program"] == str(base / "bin" / "crashguard") and f5["pythonArgs"] == (["-P"] if prefix == "-P" else [])
    assert not marker.exists(), marker.read_text()
