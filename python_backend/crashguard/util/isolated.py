"""How Crash Guard starts Python children of its own (the crash watchdog, the supervised trainer) and the command a
run records for Resume, so that nothing is imported from their working folder.

`python -m X` and `python -c` put the working folder first on sys.path: a training folder that holds a
`crashguard/` (or `psutil/`, `torch/`) package of its own would run instead. `-I` (isolated mode, every Python
>= 3.4) leaves the working folder out, and PYTHONPATH and the user's site-packages with it. So a child is started as

- `python -I -m X` when an isolated interpreter finds this very crashguard, and what the child needs, where this
  process finds them: a virtual environment, a system or an editable install (the usual case); else
- `python -I -c <boot>`, where the boot sets sys.path to this process's own import path less every entry that names
  a working folder (empty, relative, the current directory), crashguard's root first: the child imports what this
  process imports, from where it imported it (a `pip install --user`, PYTHONPATH), and never from its folder.

Which of the two is decided by asking the interpreter for its isolated sys.path once per process (~20 ms); under a
debugger that follows children (debugpy), always the boot.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGE = "crashguard"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds crashguard/
_ASK_PATH = "import json, sys; print(json.dumps(sys.path))"


@functools.cache
def isolated_sys_path(python: str) -> tuple[str, ...]:
    """sys.path of `python -I` (empty when the interpreter cannot be asked); run outside any project folder."""
    try:
        done = subprocess.run([python, "-I", "-c", _ASK_PATH], capture_output=True, text=True, timeout=30,
                              cwd=os.path.abspath(os.sep), stdin=subprocess.DEVNULL, check=True)
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ()
    return tuple(p for p in found if isinstance(p, str)) if isinstance(found, list) else ()


def _origin(spec: importlib.machinery.ModuleSpec | None) -> str | None:
    return os.path.realpath(spec.origin) if spec is not None and spec.origin else None


def found_alike(names: Sequence[str], path: Sequence[str]) -> bool:
    """Whether an interpreter whose sys.path is `path` finds each of `names` (top-level) where this process does.
    Only looks (find_spec of a top-level name executes nothing); a name this process lacks is not compared."""
    for name in names:
        here = _origin(importlib.util.find_spec(name))
        if here is not None and _origin(importlib.machinery.PathFinder.find_spec(name, list(path))) != here:
            return False
    return True


def own_import_path() -> list[str]:
    """This process's sys.path with crashguard's root first, less every entry that names a working folder."""
    try:
        cwd: str | None = os.path.realpath(os.getcwd())
    except OSError:
        cwd = None
    out = [str(PACKAGE_ROOT)]
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.realpath(entry) != cwd and entry not in out:
            out.append(entry)
    return out


def module_command(module: str, needs: Sequence[str] = ()) -> list[str]:
    """The argv (without arguments) that runs `python -m <module>` of this very crashguard with this interpreter,
    never importing from the working folder. `needs`: top-level packages the child imports besides crashguard."""
    # Under debugpy, a child's `-m X` is re-run as pydevd's `--module X`, which puts the working folder first again
    # (microsoft/debugpy#1916): the boot sets sys.path itself, whoever runs it.
    debugged = "pydevd" in sys.modules
    path = () if debugged else isolated_sys_path(sys.executable)
    if path and found_alike((PACKAGE, *needs), path):
        return [sys.executable, "-I", "-m", module]
    boot = (f"import runpy, sys; sys.path[:] = {own_import_path()!r}; "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [sys.executable, "-I", "-c", boot]


__all__ = ["PACKAGE_ROOT", "found_alike", "isolated_sys_path", "module_command", "own_import_path"]
