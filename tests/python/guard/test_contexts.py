"""memory_safe_context on the real machine's RAM, with thresholds chosen around the current use."""

from __future__ import annotations

import pytest

from crashguard import MemoryPressureError, memory_safe_context
from crashguard.monitor.host import read_ram


def test_passes_under_the_threshold() -> None:
    with memory_safe_context(threshold=0.999) as fraction:
        assert fraction is not None and 0 < fraction < 0.999


def test_raises_on_entry_when_over_the_threshold() -> None:
    ran = []
    with pytest.raises(MemoryPressureError) as caught, memory_safe_context(threshold=0.0001):
        ran.append(1)
    assert ran == []
    assert caught.value.resource == "RAM"
    assert "over the 0% threshold" in str(caught.value)


def test_warn_mode_warns_and_runs() -> None:
    ran = []
    with pytest.warns(ResourceWarning, match="RAM memory at"), memory_safe_context(threshold=0.0001,
                                                                                   on_pressure="warn"):
        ran.append(1)
    assert ran == [1]


def test_exit_check_catches_growth_inside_the_block() -> None:
    # The reading is the whole machine's, and a sandboxed kernel (this machine's) hands memory freed a moment ago
    # to the next allocation without the reading moving: the block holds chunks until the reading shows 1 GiB
    # more than on entry, then exits over a threshold set halfway. A few tries, in case another process frees
    # memory meanwhile; each passes only if the block ran and the error came at its exit.
    grow, chunk, most = 1024 * 2**20, 256 * 2**20, 4096 * 2**20
    for _ in range(3):
        before = read_ram()
        threshold = (before.used + grow / 2) / before.total
        held: list[bytearray] = []
        seen = 0
        try:
            with memory_safe_context(threshold=threshold, cleanup=False):
                while seen < grow and len(held) * chunk < most:
                    held.append(bytearray(chunk))
                    held[-1][::4096] = b"\x01" * len(held[-1][::4096])  # touch every page so it is resident
                    seen = read_ram().used - before.used
        except MemoryPressureError as caught:
            if seen >= grow:
                assert "RAM" in str(caught)
                return
        finally:
            held.clear()
    pytest.fail(f"holding up to {most >> 20} MiB inside the block never tripped the exit check in 3 tries")


def test_an_exception_inside_is_not_replaced() -> None:
    with pytest.raises(KeyError), memory_safe_context(threshold=0.999):
        raise KeyError("original")
