"""The trainer side of a runs folder as hostile input (issue 21): a real registered run whose folders are swapped
for symlinks after it started, and control files that try to name paths. The run reads, writes and deletes only
through the descriptors it opened at registration, and only plain request ids name answer files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from trainer_helpers import StartTrainer

from crashguard.runs.files import read_json


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _steps_advance(status_file: Path, by: int, timeout: float = 30.0) -> None:
    """Until the run's recorded step grew by `by` (so it went through that many step boundaries)."""
    start = read_json(status_file)
    assert isinstance(start, dict)
    deadline = time.monotonic() + timeout
    while True:
        now = read_json(status_file)
        if isinstance(now, dict) and now["step"] >= start["step"] + by:
            return
        assert time.monotonic() < deadline, f"the run did not advance {by} steps"
        time.sleep(0.05)


def test_a_control_folder_swapped_for_a_symlink_after_start_never_redirects_a_delete_or_a_write(
        tmp_path: Path, runs_dir: Path, start_trainer: StartTrainer) -> None:
    precious = tmp_path / "editor-settings"  # what the link points at: files the run must never touch
    precious.mkdir()
    (precious / "settings.json").write_text('{"editor.fontSize": 14}')
    (precious / "1-request.json").write_text(json.dumps({"id": "1-request", "action": "cleanup"}))
    before = _contents(precious)
    child = start_trainer("swapped", mb=10)
    run_dir = runs_dir / "swapped"
    (run_dir / "control").rename(run_dir / "control.orig")
    (run_dir / "control").symlink_to(precious)
    _steps_advance(run_dir / "status.json", 10)  # ten step boundaries, each polling for requests
    assert child.poll() is None
    assert _contents(precious) == before, "the run deleted or wrote through the swapped control folder"


def test_a_run_folder_swapped_for_a_symlink_after_start_keeps_every_write_in_the_original(
        tmp_path: Path, runs_dir: Path, start_trainer: StartTrainer) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    child = start_trainer("moved", mb=10)
    run_dir = runs_dir / "moved"
    run_dir.rename(runs_dir / "moved.orig")
    run_dir.symlink_to(elsewhere)
    _steps_advance(runs_dir / "moved.orig" / "status.json", 5)  # the run goes on writing where it registered
    assert child.poll() is None
    assert list(elsewhere.iterdir()) == [], "the run wrote through the swapped run folder"


URGENT = textwrap.dedent("""
    import sys, time
    from crashguard.runs import RunHook
    hook = RunHook(sys.argv[2], runs_dir=sys.argv[1])
    hook.start()
    hook.watch_urgent(lambda: None, end="exit")
    step = 0
    while True:  # long steps: the urgent watcher (every 0.2 s) sees a request before the step boundary does
        step += 1
        hook.step_boundary(step=step)
        time.sleep(0.5)
""")


def test_a_request_id_that_is_a_path_writes_nothing_anywhere(tmp_path: Path, runs_dir: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", URGENT, str(runs_dir), "urgent"])
    try:
        status_file = runs_dir / "urgent" / "status.json"
        deadline = time.monotonic() + 30
        while not isinstance(read_json(status_file), dict):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        control = runs_dir / "urgent" / "control"
        # An urgent stop whose id climbs out of runs/: the watcher (every 0.2 s) and the step boundary both see it.
        request = control / "1-escape.json"
        request.write_text(json.dumps({"id": "../../../escaped", "action": "checkpoint_and_stop", "urgent": True,
                                       "sent": time.time()}))
        request.chmod(0o600)
        _steps_advance(status_file, 4)
        assert child.poll() is None, "the run acted on a request whose id is a path"
        assert not list(tmp_path.rglob("escaped*")) and not list(tmp_path.parent.glob("escaped*"))
        assert not [p.name for p in control.iterdir() if p.name.endswith(".done.json")]
    finally:
        child.kill()
        child.wait(timeout=10)
    assert os.path.exists(runs_dir / "urgent" / "status.json")
