"""`checkpoint_cost` on a tiny model: every mode runs in its own process and writes what it says (no timing is
asserted: the figures are the benchmark's, in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from benchmarks.checkpoint_cost import MODES, run_benchmark, table


@pytest.mark.slow
def test_each_mode_checkpoints_as_named_and_the_table_has_a_row_each() -> None:
    result = run_benchmark(steps=6, every=3, width=64, layers=1, repeats=1, warmup=1)
    rounds = {r["mode"]: r for r in result["rounds"]}
    assert set(rounds) == set(MODES) and all(r["steps"] == 6 and r["peak_rss"] > 0 for r in rounds.values())
    assert [rounds[m]["checkpoints"] for m in MODES] == [0, 2, 2]
    assert rounds["none"]["snapshot_bytes"] is None and rounds["sync"]["snapshot_bytes"] is None
    weights = rounds["background"]["weights_bytes"]
    assert rounds["background"]["snapshot_bytes"] >= 3 * weights  # the weights and AdamW's two moments, copied
    assert result["summary"]["none"]["ratio"] == 1.0
    assert len(table(result).splitlines()) == 4 + len(MODES)
