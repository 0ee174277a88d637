"""How to resume a run: the command line that started it, with the resume argument its integration declares.

Recorded in status.json as `resume_command` ({argv, cwd}; argv[0] is the interpreter) when the run registers; the
extension's Resume runs exactly that argv in a terminal in that cwd, only after the user chose Resume, only in a
trusted workspace. Plain Python (no torch).

A `crashguard train` records itself started isolated (`python -I -m crashguard train ...`, util/isolated.py), so a
`crashguard/` package in the run's folder never runs on Resume; under torchrun the torchrun command, with its
workers started the same way (`--no-python python -I -m crashguard`: torchrun's own `-m` starts them as
`python -u -m crashguard` in the working folder).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import psutil

from ..util.isolated import module_command

TRAINER_NEEDS = ("psutil", "torch", "monai")  # what the trainer imports besides crashguard (looked for, not imported)
TORCHRUN_MODULES = ("torch.distributed.run", "torch.distributed.launch")
# torchrun's options that take no value (every other option takes one, as `--opt V` or `--opt=V`).
TORCHRUN_FLAGS = frozenset({"-m", "--module", "--no-python", "--no_python", "--standalone", "--run-path",
                            "--run_path", "--virtual-local-rank", "--virtual_local_rank", "--use-env", "--use_env"})


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
    resume must start every rank), isolated from its folder where it ran crashguard. None when there is nothing to
    rerun (a notebook kernel)."""
    if _under_torchrun():
        try:
            parent = psutil.Process().parent()
            argv = parent.cmdline() if parent is not None else []
            if argv and not os.path.isabs(argv[0]):
                argv[0] = parent.exe()  # type: ignore[union-attr]
        except psutil.Error:
            return None
        return isolated_torchrun(argv) if argv else None
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    if _interactive_kernel(argv) or len(argv) < 2 or argv[1] == "-c":
        return None  # a notebook, an interactive interpreter, or `python -c CODE`: nothing to start again
    return argv


def crashguard_command() -> list[str]:
    """`python -I -m crashguard` with this interpreter and this very crashguard (util/isolated.py): the trainer a
    supervisor starts and the command a `crashguard train` records for Resume."""
    return module_command("crashguard", needs=TRAINER_NEEDS)


def isolated_torchrun(argv: Sequence[str]) -> list[str]:
    """The torchrun command `argv` ([python, torchrun script | -m torch.distributed.run, options, target, args])
    with nothing imported from its working folder: a `-m crashguard` target (or `--no-python crashguard`, which
    Resume would look up on its PATH) becomes `--no-python` + this crashguard's isolated command, and torchrun
    started as a module is started isolated. A script target is returned as it is."""
    out = list(argv)
    if len(out) >= 3 and out[1] == "-m" and out[2] in TORCHRUN_MODULES:
        out = [*module_command(out[2], needs=("torch",)), *out[3:]]
        options_from = len(out) - len(argv) + 3
    elif len(out) >= 2 and os.path.basename(out[1]) == "torchrun":
        options_from = 2
    else:
        return out
    rest = out[options_from:]
    i = 0
    while i < len(rest) and rest[i].startswith("-"):  # torchrun's options, up to its target
        i += 1 if "=" in rest[i] or rest[i] in TORCHRUN_FLAGS else 2
    options, target = rest[:i], rest[i] if i < len(rest) else ""
    as_module = bool({"-m", "--module"} & set(options))
    as_program = bool({"--no-python", "--no_python"} & set(options))
    if (target == "crashguard" and as_module) or (as_program and os.path.basename(target) == "crashguard"):
        # `-m crashguard` imports from the folder; `--no-python crashguard` finds the script on PATH at Resume
        options = [a for a in options if a not in ("-m", "--module", "--no-python", "--no_python")]
        return [*out[:options_from], *options, "--no-python", *crashguard_command(), *rest[i + 1:]]
    return out  # a script target: crashguard is not resolved from the folder


def resume_command(resume_args: Sequence[str] = (), argv: Sequence[str] | None = None,
                   cwd: str | None = None) -> dict[str, Any] | None:
    """{argv, cwd} that resumes this run, or None if it cannot be known."""
    base = list(argv) if argv is not None else current_command()
    if not base or not os.path.isabs(base[0]):
        return None
    return {"argv": with_resume_args(base, resume_args), "cwd": os.path.abspath(cwd or os.getcwd())}
