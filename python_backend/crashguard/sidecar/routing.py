"""Which connected window gets which notification (docs/protocol.md, "One monitor, several windows").

- `crashGuard/warning`: exactly one window, the focused one, else the most recently focused, else the one that
  joined last. A return to normal (`level: "normal"`) goes to every window: it shows nothing, and it re-arms each
  window's own "notified at this level" state.
- `crashGuard/runEvent`: the windows whose runs directories hold the run; a `crashed` event once per run (its run
  folder), not once per rank of a torchrun job, until that run starts again.
- `crashGuard/action`: every window (each logs it and keeps it in its report), with `notify` true for the one
  window a warning would go to and false for the others, so a ladder's action is one toast on the host, not one
  per window.
- everything else (samples, logs): every window.

Pure bookkeeping on wire payloads (dicts): no I/O, no threads (the hub calls it on its event loop only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocol as p

CRASHES_REMEMBERED = 4096  # run folders whose crash was told (bounded; the oldest is forgotten first)


@dataclass
class Window:
    """What the router knows of one connection."""

    key: int
    joined: int  # order of joining (a tie-breaker that never repeats)
    runs_dirs: frozenset[Path] = frozenset()
    focused: bool = False
    focused_at: float = -math.inf  # when it last reported being focused (monotonic seconds)
    listening: bool = False  # initialized: a connection that never initialized (a probe) gets nothing


@dataclass
class Router:
    windows: dict[int, Window] = field(default_factory=dict)
    _crashes_told: dict[str, None] = field(default_factory=dict)  # an ordered set
    _joined: int = 0

    def join(self, key: int) -> Window:
        window = self.windows.get(key)
        if window is None:
            self._joined += 1
            window = self.windows[key] = Window(key, self._joined)
        return window

    def register(self, key: int, runs_dirs: Iterable[Path]) -> None:
        """The window's runs directories (from its initialize or a settings change)."""
        self.join(key).runs_dirs = frozenset(runs_dirs)

    def listen(self, key: int, runs_dirs: Iterable[Path] | None = None) -> None:
        """The window is initialized: from now on notifications are for it too."""
        window = self.join(key)
        window.listening = True
        if runs_dirs is not None:
            window.runs_dirs = frozenset(runs_dirs)

    def leave(self, key: int) -> None:
        self.windows.pop(key, None)

    def focus(self, key: int, focused: bool, now: float) -> None:
        window = self.windows.get(key)
        if window is None:
            return
        window.focused = focused
        if focused:
            window.focused_at = now

    def runs_dirs(self) -> list[Path]:
        """The union of every window's runs directories, in the order the windows joined (a window's folders are
        watched from its initialize, so its first sample already has its runs)."""
        ordered = sorted(self.windows.values(), key=lambda w: w.joined)
        return list(dict.fromkeys(d for w in ordered for d in sorted(w.runs_dirs)))

    def alert_window(self) -> int | None:
        """The one window a warning goes to."""
        listening = [w for w in self.windows.values() if w.listening]
        if not listening:
            return None
        focused = [w for w in listening if w.focused]
        pool = focused or listening
        return max(pool, key=lambda w: (w.focused_at, w.joined)).key

    def holders(self, run_dir: str) -> list[int]:
        """The windows whose runs directories hold the run folder `run_dir`."""
        parent = Path(run_dir).parent
        return [w.key for w in self.windows.values() if w.listening and parent in w.runs_dirs]

    def deliveries(self, method: str, params: Any) -> list[tuple[list[int], Any]]:
        """The notification as each group of windows gets it: (window keys, params). One group, except for a
        ladder's action: the alert window's copy says `notify: true`, the others' `notify: false`."""
        keys = self.targets(method, params)
        if method != p.ACTION or not isinstance(params, dict) or not keys:
            return [(keys, params)] if keys else []
        alert = self.alert_window()
        others = [k for k in keys if k != alert]
        groups: list[tuple[list[int], Any]] = [([alert], {**params, "notify": True})] if alert in keys else []
        return groups + ([(others, {**params, "notify": False})] if others else [])

    def targets(self, method: str, params: Any) -> list[int]:
        everyone = [w.key for w in self.windows.values() if w.listening]
        if method == p.WARNING and isinstance(params, dict) and params.get("level") != p.NORMAL:
            one = self.alert_window()
            return [] if one is None else [one]
        if method == p.RUN_EVENT and isinstance(params, dict):
            run = params.get("run")
            run_dir = run.get("dir") if isinstance(run, dict) else None
            if not isinstance(run_dir, str):
                return everyone
            event = params.get("event")
            if event == "crashed":
                if run_dir in self._crashes_told:
                    return []  # another rank of a run already reported
                self._crashes_told[run_dir] = None
                while len(self._crashes_told) > CRASHES_REMEMBERED:
                    del self._crashes_told[next(iter(self._crashes_told))]
            elif event == "started":
                self._crashes_told.pop(run_dir, None)  # a resume: its next crash is news
            return self.holders(run_dir)
        return everyone
