"""A user's project keeps working beside an installed Crash Guard: its own pytest suite passes, whatever its
packages are called. Installing Crash Guard registers the pytest plugin `crashguard` (an entry point) for every
pytest run in that environment, so the plugin must not import anything a project may also have: a project whose
package is `python_backend` (the name the plugin was once imported under, which made such a project's pytest stop
with exit 3) or one that starts with `crashguard` (`crashguard_tests`).

The project is a throwaway folder with the usual layout, run with this environment's pytest as a subprocess
(`python -m pytest` puts the project's folder first on sys.path, where its packages shadow any installed ones)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = {
    "python_backend/__init__.py": "",
    "python_backend/core.py": "def double(x):\n    return 2 * x\n",
    "python_backend/pytest_plugin.py": "raise ImportError('the project\\'s own module, not a pytest plugin')\n",
    "crashguard_tests/__init__.py": "",
    "crashguard_tests/helpers.py": "def triple(x):\n    return 3 * x\n",
    "tests/test_core.py": ("from crashguard_tests.helpers import triple\nfrom python_backend.core import double\n\n\n"
                           "def test_double():\n    assert double(2) == 4\n\n\n"
                           "def test_triple():\n    assert triple(2) == 6\n"),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my-project"
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def pytest_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=project,
                          capture_output=True, text=True, timeout=120)


def test_the_plugin_is_installed_in_this_environment(project: Path) -> None:
    """Otherwise the tests below would prove nothing: the entry point loads the plugin in the project's run."""
    done = pytest_in(project, "--help")
    assert done.returncode == 0, done.stderr
    assert "--memory-guard" in done.stdout


def test_a_project_with_its_own_python_backend_passes_its_suite(project: Path) -> None:
    done = pytest_in(project, "-q", "tests")
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "2 passed" in done.stdout


def test_the_switched_on_plugin_runs_beside_the_projects_packages(project: Path) -> None:
    done = pytest_in(project, "-q", "--memory-guard", "tests")
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "2 passed" in done.stdout and "heaviest tests (peak RSS growth)" in done.stdout
