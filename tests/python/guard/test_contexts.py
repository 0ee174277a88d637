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
    before = read_ram()
    # A threshold between the entry reading and the reading after holding ~1 GiB inside the block.
    grow = 1024 * 2**20
    threshold = (before.used + grow / 2) / before.total
    with pytest.raises(MemoryPressureError), memory_safe_context(threshold=threshold, cleanup=False):
        block = bytearray(grow)
        block[:: 4096] = b"\x01" * len(block[:: 4096])  # touch every page so it is resident
        held = block  # still alive at exit
    assert len(held) == grow


def test_an_exception_inside_is_not_replaced() -> None:
    with pytest.raises(KeyError), memory_safe_context(threshold=0.999):
        raise KeyError("original")
