"""The run's one event log (runs/event_log.py) against a hostile runs folder: a planted symlink, hard link or FIFO
refuses the run before anything is written and nothing is written through it; the reader skips what is not an event
and follows no link; only rank 0 keeps the log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crashguard.runs.event_log import EVENTS_FILE, read_events
from crashguard.runs.files import RefusedFile
from crashguard.runs.hook import RunHook
from crashguard.runs.status import RunState


def _planted(kind: str, run_dir: Path, target: Path) -> None:
    run_dir.mkdir(parents=True)
    events = run_dir / EVENTS_FILE
    if kind == "symlink":
        events.symlink_to(target)
    elif kind == "hard link":
        os.link(target, events)
    else:
        os.mkfifo(events)


@pytest.mark.parametrize("kind", ["symlink", "hard link", "fifo"])
def test_a_planted_event_log_refuses_the_run_and_writes_nothing_through_it(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "bashrc"
    target.write_text("export PATH=...\n")
    _planted(kind, tmp_path / "runs" / "life", target)
    hook = RunHook("life", runs_dir=tmp_path / "runs")
    with pytest.raises(RefusedFile, match=EVENTS_FILE):
        hook.start()
    assert target.read_text() == "export PATH=...\n"
    assert not (tmp_path / "runs" / "life" / "status.json").exists()  # refused before any status


def test_the_event_log_reader_skips_what_is_not_an_event(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    good = {"time": 1.0, "step": 3, "event": "checkpoint", "message": "checkpoint at step 3"}
    lines = [json.dumps(good), "{torn", "[1, 2]", '{"event": 5}', '{"event": "x", "v": NaN}',
             json.dumps({"event": "huge", "message": "x" * 70_000}), "", json.dumps({**good, "step": 4})]
    path.write_text("\n".join(lines) + "\n")
    assert [r["step"] for r in read_events(path)] == [3, 4]
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    assert list(read_events(link)) == []  # a symlink is not followed
    assert list(read_events(tmp_path / "missing.jsonl")) == []


def test_only_rank_0_keeps_the_event_log_and_a_record_says_when_and_at_which_step(tmp_path: Path) -> None:
    hooks = [RunHook("ranked", runs_dir=tmp_path / "runs", rank=rank, world_size=2) for rank in (0, 1)]
    for hook in hooks:
        hook.start()
        hook.update(step=4)
        hook.log("checkpoint", f"checkpoint on rank {hook.status.rank}", path="p")
        hook.finish(RunState.FINISHED)
        hook.log("late", "after the end: the log is opened again")
    records = list(read_events(tmp_path / "runs" / "ranked" / EVENTS_FILE))
    assert [(r["event"], r["step"], r["message"]) for r in records] == [
        ("checkpoint", 4, "checkpoint on rank 0"), ("late", 4, "after the end: the log is opened again")]
    assert records[0]["path"] == "p" and isinstance(records[0]["time"], float)
    assert oct((tmp_path / "runs" / "ranked" / EVENTS_FILE).stat().st_mode & 0o777) == "0o600"
