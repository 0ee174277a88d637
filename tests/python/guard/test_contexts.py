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
    # The reading is the whole machine's, so another process freeing memory meanwhile can hide our growth: a
    # few tries, each passing only if the block ran and the error came at its exit.
    grow = 1024 * 2**20
    for _ in range(3):
        before = read_ram()
        # A threshold between the entry reading and the reading after holding ~1 GiB inside the block.
        threshold = (before.used + grow / 2) / before.total
        ran = []
        try:
            with memory_safe_context(threshold=threshold, cleanup=False):
                block = bytearray(grow)
                block[:: 4096] = b"\x01" * len(block[:: 4096])  # touch every page so it is resident
                ran.append(len(block))  # still alive at exit
        except MemoryPressureError as caught:
            if ran == [grow]:
                assert "RAM" in str(caught)
                return
        finally:
            block = bytearray()
    pytest.fail("holding 1 GiB inside the block never tripped the exit check in 3 tries")


def test_an_exception_inside_is_not_replaced() -> None:
    with pytest.raises(KeyError), memory_safe_context(threshold=0.999):
        raise KeyError("original")
