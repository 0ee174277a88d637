"""Was it the kernel's OOM killer? The exact cause of a run that vanished, from the kernel's own counters.

The OOM killer sends SIGKILL and counts the kill: in the victim's memory cgroup (`memory.events` / v1
`memory.oom_control` `oom_kill`) and machine-wide (`/proc/vmstat` `oom_kill`). A run that died by SIGKILL while a
counter covering it rose, in the short interval between the last reading that saw it alive and its death, was
killed by the OOM killer. Whoever watches the run takes a reading before (`OomCounters`) and one after:
the supervisor of `crashguard train` (it knows the signal: it is the parent) and the sidecar (it does not know
the signal, but sees the run's own cgroup counter).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..monitor.memcg import MemcgDir, oom_kills_of, system_oom_kills

OOM_KILLER = "killed by the kernel's OOM killer"


@dataclass(frozen=True)
class OomCounters:
    group: int | None  # the run's memory cgroup's oom_kill count (None: no group of its own, or gone)
    system: int | None  # /proc/vmstat oom_kill


def read_counters(group: MemcgDir | None) -> OomCounters:
    return OomCounters(oom_kills_of(group) if group is not None else None, system_oom_kills())


def _rose(before: int | None, after: int | None) -> int:
    return after - before if before is not None and after is not None and after > before else 0


def oom_cause(before: OomCounters, after: OomCounters, sigkill: bool | None) -> str | None:
    """The exit cause if the OOM killer did it, else None. `sigkill`: True/False when the death signal is known
    (the parent), None when it is not (the sidecar).

    The kernel counts every OOM kill in the victim's own memory cgroup, whichever OOM it was (the group's limit or
    the whole machine's), so where the run's group could be read before and after, its counter alone decides: a
    kill elsewhere at the same moment cannot be mistaken for this one. The system's counter is the fallback."""
    if sigkill is False:
        return None  # another signal or an exit code: whatever the counters did, not this run's OOM kill
    signal = "SIGKILL; " if sigkill else ""
    in_group = _rose(before.group, after.group)
    if in_group:
        return f"{OOM_KILLER} ({signal}its memory cgroup counted {in_group} OOM kill{'s' if in_group > 1 else ''})"
    if before.group is not None and after.group is not None:
        return None
    in_system = _rose(before.system, after.system)
    if in_system and sigkill:
        return f"{OOM_KILLER} (SIGKILL while the system's OOM-kill count rose by {in_system})"
    if in_system:
        # Without the signal and without a group of its own, a kill elsewhere at the same moment cannot be ruled out.
        return f"probably {OOM_KILLER} (it vanished while the system's OOM-kill count rose by {in_system})"
    return None


def is_oom_kill(cause: str | None) -> bool:
    return bool(cause) and OOM_KILLER in str(cause)
