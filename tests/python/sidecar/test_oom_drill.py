"""The drill with a real kernel OOM, inside a memory group this test creates (448 MiB) and removes.

An "editor" stand-in holds more memory than the trainer ever gets to (about 250 MiB); a registered trainer grows
until the group's limit. Without Crash Guard's score the kernel kills the biggest process, the editor; with the
score the trainer volunteers at registration (oom_score_adj 500, adding half the limit to its badness) and the
kernel kills the trainer while the editor lives on. The real sidecar, watching, reports the run crashed with cause
"killed by the kernel's OOM killer" (its group's OOM-kill counter rose while it vanished) and the heaviest processes
of the last sample, and the resumed run continues from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import hog_trainer
import memory_hog
import psutil
import pytest
from memory_groups import MakeGroup, MemoryGroup
from sidecar_session import sidecar

from crashguard.guard.oom_score import DEFAULT_OOM_SCORE_ADJ, read_oom_score_adj
from crashguard.sidecar import protocol as p

pytestmark = pytest.mark.slow
MiB = 2**20
LIMIT = 448 * MiB
EDITOR = 240 * MiB  # the stand-in grows in 50 MiB chunks to 250 MiB: more than the trainer holds at the OOM


def start_editor(group: MemoryGroup, tmp_path: Path) -> subprocess.Popen[bytes]:
    proc = group.spawn(memory_hog.command(EDITOR, tmp_path / "editor-signals", hold=120.0))
    deadline = time.monotonic() + 30
    while psutil.Process(proc.pid).memory_info().rss < EDITOR:
        assert proc.poll() is None and time.monotonic() < deadline, "the editor stand-in did not grow"
        time.sleep(0.05)
    return proc


def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    return proc.wait(timeout=timeout)


async def test_the_kernel_kills_the_volunteering_trainer_not_the_bigger_editor(memory_group: MakeGroup,
                                                                               tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    group = memory_group(LIMIT)
    editor_score = read_oom_score_adj()

    # 1. Without Crash Guard's score: the same set-up, and the kernel kills the biggest process, the editor.
    editor = start_editor(group, tmp_path)
    plain = group.spawn(hog_trainer.command(runs, "plain", "--oom-score-adj", "none", "--grow-mb", "8",
                                            "--step-seconds", "0.05", "--max-mb", "200", "--steps", "100000"))
    assert await asyncio.to_thread(wait_exit, editor) == -9  # SIGKILL, by the kernel
    assert group.oom_kills() == 1
    assert plain.poll() is None and read_oom_score_adj(plain.pid) == 0
    plain.terminate()  # the hook turns SIGTERM into a stop at the next step
    assert await asyncio.to_thread(wait_exit, plain) == 0

    # 2. With it: a new editor, the trainer registers (volunteering), the sidecar watches.
    editor = start_editor(group, tmp_path)
    go, steps_log = tmp_path / "go", tmp_path / "steps.log"
    async with sidecar({"runsDirectory": str(runs), "sampleIntervalMs": 250, "topProcesses": 5}) as session:
        trainer = group.spawn(hog_trainer.command(runs, "brats", "--grow-mb", "8", "--step-seconds", "0.1",
                                                  "--checkpoint-every", "2", "--go-file", str(go),
                                                  "--steps-log", str(steps_log), "--steps", "100000"))
        sample = await session.wait_for(p.SAMPLE, lambda s: any(
            r["name"] == "brats" and r["alive"] and r["step"] >= 3 for r in s["runs"]), timeout=30)
        seen = next(r for r in sample["runs"] if r["name"] == "brats")
        assert seen["oomScoreAdj"] == DEFAULT_OOM_SCORE_ADJ == read_oom_score_adj(trainer.pid)
        assert seen["memory"]["max"] == LIMIT and seen["memory"]["cgroup"] == str(group.path)
        assert read_oom_score_adj(editor.pid) == editor_score  # the editor's score is never touched
        go.touch()  # now it leaks towards the limit
        assert await asyncio.to_thread(wait_exit, trainer) == -9
        assert editor.poll() is None, "the editor stand-in was killed although the trainer volunteered"
        assert group.oom_kills() == 2

        event = await session.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed" and e["run"]["name"] == "brats")
        assert "killed by the kernel's OOM killer" in event["message"], event["message"]
        assert event["run"]["exitCause"].startswith("killed by the kernel's OOM killer (its memory cgroup counted")
        assert event["heaviest"] and all(h["pid"] > 0 and h["rss"] > 0 for h in event["heaviest"])
        assert "heaviest processes at the last sample" in event["message"]
        checkpoint = event["run"]["checkpoint"]
        assert checkpoint and Path(checkpoint).exists()
        history = await session.request(p.HISTORY, {})
        assert any(e["kind"] == "run" and e["level"] == "crashed" and "OOM killer" in e["message"]
                   for e in history["events"])
        later = await session.wait_samples(2)
        assert "OOM killer" in next(r for r in later[-1]["runs"] if r["name"] == "brats")["exitCause"]

        # 3. Resume: the run continues from its last checkpoint (a fresh process starts small again).
        last = hog_trainer.latest_checkpoint(runs / "brats" / "checkpoints")
        assert last is not None and str(last[1]) == checkpoint
        resumed = group.spawn(hog_trainer.command(runs, "brats", "--resume", "--steps", str(last[0] + 3),
                                                  "--steps-log", str(steps_log)))
        assert await asyncio.to_thread(wait_exit, resumed) == 0
        finished = await session.wait_for(p.RUN_EVENT, lambda e: e["event"] == "finished"
                                          and e["run"]["name"] == "brats")
        assert finished["run"]["step"] == last[0] + 3
        steps = [int(line.split()[1]) for line in steps_log.read_text().splitlines()
                 if int(line.split()[0]) == resumed.pid]
        assert steps == [last[0] + 1, last[0] + 2, last[0] + 3]
    assert editor.poll() is None  # still alive at the end: the fixture ends it with its group
