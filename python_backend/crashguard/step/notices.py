"""What a run says on stderr without any logging set up: one concise line per thing a user must know happened (a
back-off, a cleanup that freed memory, a stop and its checkpoint, a resume), and the warnings of a set-up that
silently lacks something (no back-off, nothing to checkpoint)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

from ..guard.cleanup import CleanupReport

PREFIX = "crashguard: "
FREED_WORTH_SAYING = 1 << 20  # bytes: a cleanup that freed less than a MiB freed nothing worth a line


class CrashGuardWarning(UserWarning):
    """A set-up that works, but without something the user probably expects (Python's warning filters apply)."""


def say(message: str) -> None:
    """One line on stderr, flushed (a progress bar or a notebook may share the stream)."""
    print(PREFIX + message, file=sys.stderr, flush=True)


def warn(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, CrashGuardWarning, stacklevel=stacklevel)


def announced(cleanup: Callable[[], CleanupReport]) -> Callable[[], CleanupReport]:
    """`cleanup`, saying on stderr what it freed when that was worth a line."""

    def run() -> CleanupReport:
        report = cleanup()
        vram = report.vram_freed or 0
        if report.rss_freed >= FREED_WORTH_SAYING or vram >= FREED_WORTH_SAYING:
            gpu = f" and {vram / 2**20:.0f} MiB of GPU memory" if vram >= FREED_WORTH_SAYING else ""
            say(f"cleanup freed {max(0, report.rss_freed) / 2**20:.0f} MiB of RAM{gpu}")
        return report

    return run
