"""Containment: which mechanism a machine allows (fixture trees for what cannot run here: cgroup v2 and a user
systemd), the exact systemd-run argv, and, for real where a memory cgroup is writable (cgroup v1 here), the
supervisor starting the trainer inside its own group, telling the kernel's OOM killer from a plain kill -9, and
removing the group afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import hog_trainer
import pytest
from memory_groups import writable_parent

from crashguard.runs.containment import ContainedGroup, Containment, ContainmentError, plan, resolve_limits
from crashguard.runs.files import read_json

MiB = 2**20
SYSTEMD_RUN = "/usr/bin/systemd-run"


def fixture_root(tmp_path: Path, v2_controllers: str | None = "cpu memory pids", v1: bool = False) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    if v2_controllers is not None:
        (root / "cgroup.controllers").write_text(v2_controllers + "\n")
    if v1:
        (root / "memory" / "user" / "me").mkdir(parents=True)
        (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    return root


def user_session(tmp_path: Path) -> tuple[dict[str, str], Path]:
    runtime = tmp_path / "run-user"
    (runtime / "systemd").mkdir(parents=True)
    (runtime / "systemd" / "private").touch()
    booted = tmp_path / "run-systemd-system"
    booted.mkdir()
    return {"XDG_RUNTIME_DIR": str(runtime)}, booted


PROC_V2 = "0::/user.slice/user-1000.slice/session-2.scope\n"
PROC_HYBRID = "5:memory:/user/me\n0::/\n"


def test_limits_default_high_mark_and_refusals() -> None:
    assert resolve_limits(1000 * MiB) == (1000 * MiB, int(1000 * MiB * 0.85) // 4096 * 4096)  # whole pages
    assert resolve_limits(1000 * MiB, 900 * MiB) == (1000 * MiB, 900 * MiB)
    with pytest.raises(ContainmentError, match="below memory max"):
        resolve_limits(1000 * MiB, 1000 * MiB)
    with pytest.raises(ContainmentError, match="too small"):
        resolve_limits(10 * MiB)


def test_a_user_systemd_on_cgroup_v2_gets_a_transient_scope_with_the_exact_argv(tmp_path: Path) -> None:
    env, booted = user_session(tmp_path)
    c = plan(2 * 2**30, 1700 * MiB, "brats", pid=42, root=fixture_root(tmp_path), proc_cgroup=PROC_V2, env=env,
             which=lambda _: SYSTEMD_RUN, booted=booted)
    assert c.kind == "systemd-scope" and c.unit == "crashguard-brats-42"
    assert c.wrap(["python", "-m", "crashguard", "train"]) == [
        "systemd-run", "--user", "--scope", "--quiet", "--collect", "--unit=crashguard-brats-42",
        "-p", f"MemoryMax={2 * 2**30}", "-p", f"MemoryHigh={1700 * MiB}", "--",
        "python", "-m", "crashguard", "train"]
    assert c.describe() == ("contained in the systemd user scope crashguard-brats-42.scope "
                            "(memory max 2048 MiB, high 1700 MiB)")


def test_a_delegated_cgroup_v2_group_gets_a_child_group(tmp_path: Path) -> None:
    root = fixture_root(tmp_path)
    own = root / "user.slice" / "user-1000.slice" / "session-2.scope"
    own.mkdir(parents=True)
    (own / "cgroup.subtree_control").write_text("memory pids\n")
    c = plan(MiB * 512, MiB * 400, "brats", pid=7, root=root, proc_cgroup=PROC_V2, env={}, which=lambda _: None)
    assert c.kind == "cgroup-v2" and c.directory == own / "crashguard-brats-7"

    group = ContainedGroup(c)  # on the fixture tree: the files it writes are plain files here
    group.create()
    assert (c.directory / "memory.max").read_text() == str(MiB * 512)
    assert (c.directory / "memory.high").read_text() == str(MiB * 400)
    group.enter_in_child()
    assert (c.directory / "cgroup.procs").read_text() == "0"  # "0": the writer itself (the forked child)
    assert group.pids() == []  # never pid 0 (its process group), 1 or ourselves, whatever a file says


def test_no_mechanism_gives_one_line_with_each_reason(tmp_path: Path) -> None:
    root = fixture_root(tmp_path)
    (root / "user.slice" / "user-1000.slice" / "session-2.scope").mkdir(parents=True)  # memory not delegated
    c = plan(MiB * 512, MiB * 400, "brats", root=root, proc_cgroup=PROC_V2, env={}, which=lambda _: SYSTEMD_RUN,
             booted=tmp_path / "absent")
    assert not c.available
    line = c.describe()
    assert line.startswith("containment unavailable: systemd user scope: pid 1 is not systemd")
    assert "does not enable the memory controller for its children (cgroup.subtree_control)" in line
    assert "cgroup v1: the memory controller is not mounted" in line and "\n" not in line

    bare = plan(MiB * 512, MiB * 400, "brats", root=fixture_root(tmp_path / "b", v2_controllers=None),
                proc_cgroup="", env={}, which=lambda _: None)
    assert bare.describe() == ("containment unavailable: systemd user scope: no systemd-run on PATH; cgroup v2: "
                               "no memory controller mounted; cgroup v1: the memory controller is not mounted")


def test_a_writable_cgroup_v1_group_gets_a_child_group(tmp_path: Path) -> None:
    root = fixture_root(tmp_path, v2_controllers="", v1=True)  # hybrid: v2 without memory, v1 memory
    c = plan(MiB * 512, MiB * 400, "brats", pid=9, root=root, proc_cgroup=PROC_HYBRID, env={}, which=lambda _: None)
    assert c.kind == "cgroup-v1" and c.directory == root / "memory" / "user" / "me" / "crashguard-brats-9"
    group = ContainedGroup(c)
    group.create()
    assert (c.directory / "memory.limit_in_bytes").read_text() == str(MiB * 512)
    assert (c.directory / "memory.soft_limit_in_bytes").read_text() == str(MiB * 400)


# -- for real: the supervisor, a real memory group, a real OOM kill ------------------------------------------
SUPERVISE = """
import json, sys
from pathlib import Path
from crashguard.runs.containment import plan, resolve_limits
from crashguard.runs.supervisor import supervise
args = json.loads(sys.argv[1])
c = plan(*resolve_limits(args["max"]), args["name"])
sys.exit(supervise(args["command"], Path(args["status"]), containment=c, oom_score_adj=500))
"""


def supervised(tmp_path: Path, name: str, command: list[str], limit: int) -> subprocess.Popen[str]:
    status = tmp_path / "runs" / name / "status.json"
    args = {"max": limit, "name": name, "command": command, "status": str(status)}
    return subprocess.Popen([sys.executable, "-c", SUPERVISE, json.dumps(args)], stderr=subprocess.PIPE, text=True)


def need_memory_group() -> None:
    found = writable_parent()
    if isinstance(found, str):
        pytest.skip(found)


def groups_left(name: str) -> list[Path]:
    found = writable_parent()
    assert not isinstance(found, str)
    return list(found[0].glob(f"crashguard-{name}-*"))


def test_the_supervisor_tells_the_oom_killer_from_a_kill_9_and_removes_the_group(tmp_path: Path) -> None:
    need_memory_group()
    runs = tmp_path / "runs"
    # A leak inside a 192 MiB group: the kernel's OOM killer takes it.
    leak = supervised(tmp_path, "leak", hog_trainer.command(runs, "leak", "--grow-mb", "16", "--step-seconds",
                                                             "0.05", "--steps", "100000"), 192 * MiB)
    _, err = leak.communicate(timeout=120)
    assert leak.returncode == 128 + signal.SIGKILL, err
    status = read_json(runs / "leak" / "status.json")
    assert status["state"] == "crashed" and status["oom_score_adj"] == 500
    assert status["exit_cause"] == ("killed by the kernel's OOM killer (SIGKILL; its memory cgroup counted "
                                    "1 OOM kill)"), err
    assert "contained in the cgroup v1 memory group" in err or "contained in the cgroup v2 memory group" in err
    assert groups_left("leak") == []

    # The same run killed with kill -9 by someone: no OOM kill was counted in its group.
    go = tmp_path / "never"
    victim = supervised(tmp_path, "killed", hog_trainer.command(runs, "killed", "--go-file", str(go), "--steps",
                                                                 "100000"), 192 * MiB)
    deadline = time.monotonic() + 30
    while not isinstance(read_json(runs / "killed" / "status.json"), dict):
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(read_json(runs / "killed" / "status.json")["pid"], signal.SIGKILL)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 128 + signal.SIGKILL
    assert read_json(runs / "killed" / "status.json")["exit_cause"] == "killed by signal 9 (SIGKILL)", err
    assert groups_left("killed") == []


PLACED = """
import os, sys
from pathlib import Path
from crashguard.monitor.memcg import memcg_of, read_memcg
g = memcg_of("self"); r = read_memcg(g)
print(g.path, r.max, r.high, Path("/proc/self/oom_score_adj").read_text().strip())
"""


def test_the_trainer_starts_inside_its_group_with_its_limits_and_score(tmp_path: Path) -> None:
    need_memory_group()
    out = tmp_path / "out.txt"
    command = ["/bin/sh", "-c", f'exec "{sys.executable}" -c \'{PLACED}\' > "{out}"']
    proc = supervised(tmp_path, "placed", command, 256 * MiB)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    path, top, high, score = out.read_text().split()
    assert Path(path).name.startswith("crashguard-placed-") and int(top) == 256 * MiB
    assert int(high) == resolve_limits(256 * MiB)[1] and score == "500"
    assert groups_left("placed") == []


def test_describe_lines() -> None:
    c = Containment("cgroup-v1", 512 * MiB, 400 * MiB, directory=Path("/sys/fs/cgroup/memory/x/crashguard-a-1"))
    assert c.describe() == ("contained in the cgroup v1 memory group /sys/fs/cgroup/memory/x/crashguard-a-1 "
                            "(memory max 512 MiB, high 400 MiB)")
    assert c.wrap(["python"]) == ["python"]


@pytest.mark.parametrize(("flags", "error"), [
    (["--memory-max", "12Q"], "--memory-max: not a memory size: '12Q'"),
    (["--memory-max", "1G", "--memory-high", "2G"], "--memory-high must lie below --memory-max"),
    (["--memory-high", "1G"], "--memory-high must lie below --memory-max (or memory.max_gb)"),
    (["--memory-max", "10M"], "memory max 10485760 bytes is below 64 MiB: too small for a Python trainer"),
    (["--oom-score-adj", "5000"], "--oom-score-adj: expected an integer -1000..1000, got 5000"),
])
def test_bad_containment_flags_are_refused_before_anything_is_written(tmp_path: Path, flags: list[str],
                                                                      error: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"data": {"synthetic_if_missing": True}}))
    out = subprocess.run([sys.executable, "-m", "crashguard", "train", "--config", "config.json", *flags],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and error in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no data, no runs folder


def test_the_config_fields_are_checked_like_the_flags() -> None:
    from crashguard.training.config import ConfigError, parse_config

    memory = parse_config('{"memory": {"max_gb": 12.0, "high_gb": 10.0, "oom_score_adj": 800}}').memory
    assert (memory.max_gb, memory.high_gb, memory.oom_score_adj) == (12.0, 10.0, 800)
    assert parse_config("{}").memory.oom_score_adj == 500 and parse_config("{}").memory.max_gb is None
    with pytest.raises(ConfigError, match=r"memory: high_gb \(2.0\) must lie below max_gb \(1.0\)"):
        parse_config('{"memory": {"max_gb": 1.0, "high_gb": 2.0}}')
    with pytest.raises(ConfigError, match=r"memory\.oom_score_adj"):
        parse_config('{"memory": {"oom_score_adj": 1001}}')
