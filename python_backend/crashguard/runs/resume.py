"""How to resume a run: the command line that started it, with the resume argument its integration declares.

Recorded in status.json as `resume_command` ({argv, cwd}; argv[0] is the interpreter) when the run registers; the
extension's Resume runs exactly that argv in a terminal in that cwd, only after the user chose Resume, only in a
trusted workspace. Plain Python (no torch).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import psutil


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and "RANK" in os.environ


def _interactive_kernel(argv: Sequence[str]) -> bool:
    return "ipykernel" in sys.modules or any("ipykernel" in a for a in argv)


def with_resume_args(argv: Sequence[str], resume_args: Sequence[str]) -> list[str]:
    """argv with `resume_args` (an option and its values, e.g. ["--resume", "auto"]) set: an existing occurrence of
    the option (`--opt V` or `--opt=V`) is replaced, else the arguments are appended."""
    out = list(argv)
    if not resume_args:
        return out
    option, values = resume_args[0], list(resume_args[1:])
    for i, arg in enumerate(out):
        if arg == option:
            return [*out[:i], option, *values, *out[i + 1 + len(values):]]
        if option.startswith("-") and arg.startswith(option + "="):
            return [*out[:i], option, *values, *out[i + 1:]]
    return [*out, option, *values]


def current_command() -> list[str] | None:
    """This process's command line with an absolute interpreter first; under torchrun, the torchrun agent's (a
    resume must start every rank). None when there is nothing to rerun (a notebook kernel)."""
    if _under_torchrun():
        try:
            parent = psutil.Process().parent()
            argv = parent.cmdline() if parent is not None else []
            if argv and not os.path.isabs(argv[0]):
                argv[0] = parent.exe()  # type: ignore[union-attr]
        except psutil.Error:
            return None
        return argv or None
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    if _interactive_kernel(argv) or len(argv) < 2 or argv[1] == "-c":
        return None  # a notebook, an interactive interpreter, or `python -c CODE`: nothing to start again
    return argv


def resume_command(resume_args: Sequence[str] = (), argv: Sequence[str] | None = None,
                   cwd: str | None = None) -> dict[str, Any] | None:
    """{argv, cwd} that resumes this run, or None if it cannot be known."""
    base = list(argv) if argv is not None else current_command()
    if not base or not os.path.isabs(base[0]):
        return None
    return {"argv": with_resume_args(base, resume_args), "cwd": os.path.abspath(cwd or os.getcwd())}
