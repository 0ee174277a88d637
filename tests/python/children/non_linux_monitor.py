"""The memory monitor (`crashguard serve`) as on a kernel without Linux's own interfaces — macOS, say: crashguard's
code finds no /proc and no /sys (psutil, which has its own implementation on every platform, still reads them
here), and there is no pidfd and no SO_PEERCRED (so no shared monitor: each window serves itself over stdio). Used
by tests/python/sidecar/test_platforms.py; arguments go to `crashguard serve`.

    python non_linux_monitor.py [--ensure]
"""

from __future__ import annotations

import builtins
import io
import os
import runpy
import signal
import socket
import sys
from typing import Any

HIDDEN = ("/proc", "/sys")


def _crashguard_asks(path: Any) -> bool:
    """Whether `path` is under /proc or /sys and crashguard (not psutil) is the one opening it."""
    if isinstance(path, int):
        return False
    try:
        text = os.fsdecode(path)
    except TypeError:
        return False
    if not text.startswith(HIDDEN):
        return False
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("psutil"):
            return False
        if module.startswith("crashguard"):
            return True
        frame = frame.f_back
    return False


def _hide(function: Any, missing: Any = FileNotFoundError) -> Any:
    """`function` as the file does not exist: raising FileNotFoundError (or returning `missing` when not an
    exception class, as os.access does). pathlib and os.path go through these, so they see the same."""
    def hidden(path: Any, *args: Any, **kwargs: Any) -> Any:
        if _crashguard_asks(path):
            if missing is FileNotFoundError:
                raise FileNotFoundError(2, "No such file or directory (not on this platform)", os.fsdecode(path))
            return missing
        return function(path, *args, **kwargs)
    return hidden


builtins.open = io.open = _hide(builtins.open)
for name in ("open", "listdir", "scandir", "stat", "lstat", "readlink"):
    setattr(os, name, _hide(getattr(os, name)))
os.access = _hide(os.access, missing=False)
for module, name in ((os, "pidfd_open"), (signal, "pidfd_send_signal"), (socket, "SO_PEERCRED")):
    if hasattr(module, name):
        delattr(module, name)

sys.argv = ["crashguard", "serve", *sys.argv[1:]]
runpy.run_module("crashguard", run_name="__main__", alter_sys=True)
