"""Run a script (an example, `-m crashguard train ...`) and kill -9 this very process at the end of optimizer step
N, as the kernel's OOM killer would: no stop asked, nothing flushed.

    python kill_at_step.py SCRIPT ARGS...        (CRASHGUARD_TEST_KILL_AT=N in the environment; without it, the
    python kill_at_step.py -m MODULE ARGS...      script simply runs: a resume through the recorded command)

The kill comes at the boundary after step N, once the run has done what it does there (status, a periodic
checkpoint handed to the background writer), through the one lifecycle every front door shares. A write still in
flight from an earlier boundary is let finish first (the bound the tests check is the interval; a kill in the
middle of a write adds the steps that write took, which the kill at a checkpoint's own boundary shows).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

from crashguard.step.lifecycle import GuardedRun

kill_at = int(os.environ.pop("CRASHGUARD_TEST_KILL_AT", "0"))
if kill_at:
    after_step = GuardedRun.after_step

    def after_step_then_die(self: GuardedRun, result: object) -> None:
        taken = self.checkpoints._since  # reset whenever a checkpoint is taken
        after_step(self, result)  # type: ignore[arg-type]
        if self.completed_steps >= kill_at:
            if self.checkpoints._since == taken:
                # No checkpoint was taken at this very boundary: let the one in flight (from an earlier boundary)
                # land, so the kill redoes the interval, not the interval plus the steps its write took. A kill at
                # a checkpoint's own boundary stays in the middle of that write (the previous one then stands).
                self.checkpoints.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    GuardedRun.after_step = after_step_then_die  # type: ignore[method-assign]

if sys.argv[1] == "-m":
    sys.argv = [sys.argv[2], *sys.argv[3:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
