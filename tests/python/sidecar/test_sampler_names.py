"""Display names of the heaviest processes: psutil's name() is the main thread's comm, which programs rename
(node/electron: "MainThread"); the sampler shows the executable instead. And crash messages without nested
parentheses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from crashguard.monitor.processes import ProcessMemory
from crashguard.sidecar.core import exit_cause_text
from crashguard.sidecar.sampler import _named, display_name


def test_display_name_rules() -> None:
    # comm renamed by the program: the executable's basename, else argv[0]'s first word.
    assert display_name("MainThread", "/opt/node-24/bin/node", ["/opt/node-24/bin/node", "server.js"]) == "node"
    assert display_name("MainThread", None, ["/usr/lib/code-server/node", "--x"]) == "node"
    assert display_name("MainThread", None, ["/usr/lib/chromium/chromium --type=renderer --a=/b/c"]) == "chromium"
    # comm truncated to 15 characters: the full basename.
    assert display_name("code-server-ver", "/usr/bin/code-server-version-x", None) == "code-server-version-x"
    # comm that matches: unchanged.
    assert display_name("python3.11", "/usr/bin/python3.11", ["python", "-m", "x"]) == "python3.11"
    assert display_name("python", "/usr/bin/python3.11", ["python", "-m", "x"]) == "python3.11"
    # nothing readable (kernel threads, another user's process): comm.
    assert display_name("kworker/0:1", None, []) == "kworker/0:1"
    assert display_name("", None, None) == "?"


def test_a_real_process_that_renamed_its_main_thread_gets_its_executable_name() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "open('/proc/self/comm', 'w').write('MainThread'); import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != "MainThread":
            assert time.monotonic() < deadline, "the child did not rename itself"
            time.sleep(0.02)
        named = _named(ProcessMemory(pid=child.pid, name="MainThread", rss=1))
        assert named.name == os.path.basename(os.path.realpath(sys.executable)), named
        assert (named.pid, named.rss) == (child.pid, 1)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_process_that_is_gone_keeps_its_name() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    gone = ProcessMemory(pid=child.pid, name="MainThread", rss=1)
    assert _named(gone) == gone


def test_exit_causes_read_without_nested_parentheses() -> None:
    assert exit_cause_text("killed by signal 9 (SIGKILL)") == "killed by signal 9, SIGKILL"
    assert exit_cause_text("unknown (the process ended without recording why)") == \
        "cause unknown: the process ended without recording why"
    assert exit_cause_text("killed, signal 9") == "killed, signal 9"
    assert exit_cause_text(None) == "cause unknown"
