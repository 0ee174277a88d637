"""The fuzz tier (issue 21): generated runs folders and requests against the real sidecar over stdio.

Hypothesis generates run folders (names, folder shapes, symlinks and hard links, status files of any content with
any field values, lock files, control folders and request files, modes) next to a real registered run ("legit") and
real unregistered processes (the victims), and request payloads for every method. For each generated case, with
every frame read as sent (tests/python/helpers/raw_sidecar.py):

- sampling keeps its interval: no sample is lost (consecutive seq) and none cost the sidecar its interval;
- nothing unregistered is signalled: every victim (a sleeper, pid 1, this test process: the sidecar's ancestor)
  runs on, not stopped;
- nothing is written outside runs/, and nothing in the planted folders: their trees, and a folder the planted
  symlinks point at, are unchanged;
- every frame is strict JSON, every int within +-(2**53 - 1), every sample within 64 KiB;
- the legit run beside the planted ones stays controllable (a cleanup request is answered by it).

How many cases: the "ci" profile (`make test`) runs 30 generated runs folders (1-4 planted folders each) and 100
generated requests, about 30 s; `make bench` sets CRASHGUARD_FUZZ_PROFILE=long (400 and 1000). Hypothesis keeps
no example database here: a failure prints the generated case.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_sidecar import RawSidecar
from trainer_helpers import TRAINER, wait_registered

from crashguard.runs.status import RUN_NAME, RunStatus
from crashguard.sidecar import protocol as p

INTERVAL_MS = 200
settings.register_profile("ci", max_examples=30, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=400, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("CRASHGUARD_FUZZ_PROFILE", "ci")
REQUEST_EXAMPLES = {"ci": 100, "long": 1000}.get(PROFILE, 100)

pytestmark = pytest.mark.slow


@dataclass
class World:
    runs: Path  # the watched runs folder
    outside: Path  # what planted symlinks point at: must never change
    held: Path  # a file the sleeper victim holds open (planted locks hard-link to it)
    sidecar: RawSidecar
    legit: subprocess.Popen[bytes]
    victims: list[subprocess.Popen[bytes]]
    count: int = 0

    def pids(self) -> dict[str, int]:
        return {"sleeper": self.victims[0].pid, "legit": self.legit.pid, "init": 1, "test": os.getpid(),
                "dead": _dead_pid()}


_DEAD: list[int] = []


def _dead_pid() -> int:
    if not _DEAD:
        proc = subprocess.Popen(["true"])
        proc.wait()
        _DEAD.append(proc.pid)
    return _DEAD[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fuzz")
    runs, outside = root / "runs", root / "outside"
    runs.mkdir()
    outside.mkdir()
    (outside / "settings.json").write_text('{"editor.fontSize": 14}')
    (outside / "1-request.json").write_text(json.dumps({"id": "1-request", "action": "cleanup"}))
    (outside / "sub").mkdir()
    held = root / "held-open"
    held.write_text("")
    held.chmod(0o600)
    sleeper = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]); time.sleep(3600)",
                                str(held)])
    legit = subprocess.Popen([sys.executable, str(TRAINER), "--runs-dir", str(runs), "--name", "legit", "--mb", "10"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_registered(runs, "legit", legit.pid)
    sidecar = RawSidecar({"runsDirectory": str(runs), "sampleIntervalMs": INTERVAL_MS})
    try:
        sidecar.wait_samples(2)
        yield World(runs, outside, held, sidecar, legit, [sleeper])
    finally:
        sidecar.close()
        for proc in (legit, sleeper):
            proc.kill()
            proc.wait(timeout=10)


# -- generated runs folders ---------------------------------------------------------------------------------------
FIELDS = [f for f in RunStatus.__dataclass_fields__ if f not in ("name", "pid", "create_time")]
HINTS = typing.get_type_hints(RunStatus)
EDGES = st.sampled_from([0, -1, 1, 2**31, 2**53 - 1, 2**53, -(2**53), 2**63, 2**64 - 1, 2**64, 10**300, 10**400])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), EDGES,
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["running", "crashed", "finished", "stopped", "hung", "../../x", "/etc/passwd", "x" * 9000]),
)
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                      max_leaves=12)


def field_values(name: str) -> st.SearchStrategy[Any]:
    """A value for the status field `name`: mostly of its own type (so the file gets past the type checks and
    its numbers, lengths and meanings are what is tried), sometimes anything at all."""
    hint = HINTS[name]
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    own: st.SearchStrategy[Any]
    if name == "state":
        own = st.sampled_from(["starting", "running", "stopping", "finished", "stopped", "failed", "crashed"])
    elif base is int:
        own = st.one_of(EDGES, st.integers(min_value=0, max_value=2**20))
    elif base is float:
        own = st.one_of(EDGES, st.floats(allow_nan=False, allow_infinity=False), st.just(time.time() + 86_400))
    elif base is str:
        own = st.one_of(st.text(max_size=30), st.just("x" * 9000), st.just("# heading [link](http://x) ![i](y)"))
    elif name == "resume_command":
        own = st.fixed_dictionaries({"argv": st.lists(st.text(max_size=5000), max_size=3),
                                     "cwd": st.sampled_from(["/", "relative", "/" + "d" * 5000])})
    else:
        own = VALUES
    return st.one_of(own, own, own, VALUES)
VALID_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,24}", fullmatch=True)
NAMES = st.one_of(
    VALID_NAMES, VALID_NAMES, VALID_NAMES,
    st.text(st.characters(exclude_characters="/\0", exclude_categories=("Cs",)), min_size=1, max_size=30),
)
# Raw bytes a status file may hold instead of JSON a generator wrote: what a strict parser must refuse.
RAW = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b'{"name": "x", "pid": NaN}', b'{"pid": 1e999}', b"[" * 5000, b'{"step": ' + b"9" * 400 + b"}",
                     b'{"name": "\xff"}', b"", b"{}"]),
)
REQUEST_IDS = st.one_of(st.from_regex(r"[0-9A-Za-z_-]{1,20}", fullmatch=True),
                        st.sampled_from(["../../x", "../../../escaped", "a/b", "", ".", "x" * 200]),
                        st.text(max_size=20))


@dataclass(frozen=True)
class Planted:
    name: str
    shape: str  # folder, symlink, file, fifo
    status: dict[str, Any] | bytes | str | None  # a dict (JSON), raw bytes, "symlink", "dir", "fifo", None
    rank_status: dict[str, Any] | None
    lock: str  # none, file, hardlink, symlink, dir
    control: tuple[tuple[str, Any], ...] | str | None  # request files, "symlink", or none
    file_mode: int
    folder_mode: int


@st.composite
def planted(draw: st.DrawFn, pids: dict[str, int]) -> Planted:
    who = draw(st.sampled_from(sorted(pids)))
    pid = draw(st.one_of(st.just(pids[who]), st.just(pids[who]), SCALARS))
    try:
        real_ctime: Any = psutil.Process(pids[who]).create_time()
    except psutil.Error:
        real_ctime = time.time() - 100
    # A status that passes every check, then a few fields changed: each hostile value meets the checks alone.
    now = time.time()
    fields: dict[str, Any] = {
        "version": 2, "name": "<folder>", "pid": pid, "create_time": real_ctime, "state": "running", "rank": 0,
        "world_size": 1, "step": 3, "epoch": 0, "started": now - 10, "updated": now, "last_event": "step 3"}
    if draw(st.booleans()):
        fields.update(name=draw(SCALARS), create_time=draw(st.one_of(st.just(real_ctime), SCALARS)))
    for key in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=3)):
        fields[key] = draw(field_values(key))
    status: dict[str, Any] | bytes | str | None = draw(st.one_of(
        st.just(fields), st.just(fields), st.just(fields), RAW, st.sampled_from(["symlink", "dir", "fifo"]),
        st.none()))
    control = draw(st.one_of(
        st.none(), st.just("symlink"),
        st.lists(st.tuples(REQUEST_IDS, st.one_of(VALUES, st.fixed_dictionaries(
            {"id": REQUEST_IDS, "action": st.sampled_from(["cleanup", "checkpoint_and_stop", "rm -rf", 3]),
             "urgent": st.one_of(st.booleans(), SCALARS)}))), max_size=3).map(tuple)))
    return Planted(draw(NAMES), draw(st.sampled_from(["folder"] * 8 + ["symlink", "file", "fifo"])), status,
                   draw(st.one_of(st.none(), st.just(dict(fields, rank=1, world_size=2)))),
                   draw(st.sampled_from(["none", "file", "hardlink", "symlink", "dir"])), control,
                   draw(st.sampled_from([0o600, 0o600, 0o600, 0o644, 0o666, 0o000])),
                   draw(st.sampled_from([0o755, 0o755, 0o755, 0o700, 0o777])))


def _write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    path.write_text(json.dumps(data, allow_nan=True))  # NaN/Infinity as a careless writer would put them
    path.chmod(mode)


def _plant(world: World, item: Planted) -> Path | None:
    """Create `item` in the runs folder; None when the name cannot be made (taken, or not a name here)."""
    name = item.name
    if name in (".", "..", "legit") or len(name.encode()) > 200:
        return None
    path = world.runs / name
    try:
        if path.exists() or path.is_symlink():
            return None
        if item.shape == "symlink":
            path.symlink_to(world.outside)
            return path
        if item.shape == "file":
            path.write_text("{}")
            return path
        if item.shape == "fifo":
            os.mkfifo(path, 0o600)
            return path
        path.mkdir()
    except (OSError, UnicodeError, ValueError):
        return None
    status = path / "status.json"
    if isinstance(item.status, dict):
        _write_json(status, {k: (name if v == "<folder>" else v) for k, v in item.status.items()}, item.file_mode)
    elif isinstance(item.status, bytes):
        status.write_bytes(item.status)
        status.chmod(item.file_mode)
    elif item.status == "symlink":
        status.symlink_to(world.outside / "settings.json")
    elif item.status == "dir":
        status.mkdir()
    elif item.status == "fifo":
        os.mkfifo(status, 0o600)
    if item.rank_status is not None:
        _write_json(path / "status.rank1.json", {k: (name if v == "<folder>" else v)
                                                  for k, v in item.rank_status.items()})
    lock = path / ".lock"
    if item.lock == "file":
        lock.touch(mode=0o600)
    elif item.lock == "hardlink":
        os.link(world.held, lock)
    elif item.lock == "symlink":
        lock.symlink_to(world.held)
    elif item.lock == "dir":
        lock.mkdir()
    if item.control == "symlink":
        (path / "control").symlink_to(world.outside)
    elif isinstance(item.control, tuple):
        (path / "control").mkdir()
        for request_id, body in item.control:
            if request_id and "/" not in request_id and "\0" not in request_id and request_id not in (".", ".."):
                with contextlib.suppress(OSError):
                    _write_json(path / "control" / f"{request_id}.json", body)
    path.chmod(item.folder_mode)
    return path


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path below `root` (symlinks not followed) with its type, size and mtime."""
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for entry in [*dirnames, *filenames]:
            full = os.path.join(dirpath, entry)
            st_ = os.lstat(full)
            found[full] = (stat.S_IFMT(st_.st_mode), st_.st_size if not stat.S_ISDIR(st_.st_mode) else 0,
                           st_.st_mtime_ns if not stat.S_ISDIR(st_.st_mode) else 0)
    return found


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    os.chmod(path, 0o700)
    shutil.rmtree(path)


def _check_world(world: World, since: int) -> None:
    s = world.sidecar
    assert not s.problems, s.problems[:3]
    samples = s.samples()
    seqs = [x["seq"] for x in samples]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a sample was lost"
    assert all(x["costMs"] < INTERVAL_MS for x in samples[since:]), [x["costMs"] for x in samples[since:]]
    assert not [m for m in s.logs() if "sampling failed" in m or "Traceback" in m]
    for victim in world.victims:
        assert victim.poll() is None and psutil.Process(victim.pid).status() != psutil.STATUS_STOPPED
    assert world.legit.poll() is None, "the legit run ended"


@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_generated_runs_folders_beside_a_legit_run(world: World, data: st.DataObject) -> None:
    pids = world.pids()
    items = data.draw(st.lists(planted(pids), min_size=1, max_size=4), label="planted")
    outside_before = _tree(world.outside)
    since = len(world.sidecar.samples())
    made = [path for item in items if (path := _plant(world, item)) is not None]
    try:
        trees_before = {path: _tree(path) for path in made if path.is_dir() and not path.is_symlink()}
        world.sidecar.wait_samples(2)
        runs = world.sidecar.request(p.RUNS, {})
        assert "error" not in runs, runs
        assert [r["name"] for r in runs["runs"] if r["alive"]] == ["legit"], runs["runs"]
        for path in made:
            if RUN_NAME.fullmatch(path.name):
                stop = world.sidecar.request(p.STOP_RUN, {"run": path.name, "timeoutMs": 200})
                assert "error" in stop or not stop["signalled"], stop
        cleanup = world.sidecar.request(p.CLEANUP, {"runs": ["legit"], "timeoutMs": 10_000})
        assert [(r["run"], r["ok"]) for r in cleanup["runs"]] == [("legit", True)], cleanup
        _check_world(world, since)
        assert _tree(world.outside) == outside_before, "something was written outside runs/"
        for path, before in trees_before.items():
            assert _tree(path) == before, f"the sidecar changed the planted folder {path.name!r}"
    finally:
        for path in made:
            _remove(path)


# -- generated requests -------------------------------------------------------------------------------------------
PARAMS = st.one_of(
    VALUES,
    st.fixed_dictionaries({}, optional={"run": st.one_of(NAMES, SCALARS), "dir": st.one_of(st.text(), SCALARS),
                                        "timeoutMs": SCALARS, "runs": st.one_of(st.lists(NAMES, max_size=3), VALUES),
                                        "pid": SCALARS, "seconds": SCALARS}),
)
METHODS = [p.STATUS, p.CLEANUP, p.RUNS, p.STOP_RUN, p.PROCESS_DETAIL, p.HISTORY, "crashGuard/nope"]


@settings(settings.get_profile(PROFILE), max_examples=REQUEST_EXAMPLES)
@given(method=st.sampled_from(METHODS), params=PARAMS)
def test_generated_requests_get_an_answer_or_an_error_and_nothing_else_changes(
        world: World, method: str, params: Any) -> None:
    if method == p.STOP_RUN and isinstance(params, dict) and params.get("run") == "legit":
        params = {**params, "run": "legit-not"}  # stopping the legit run is allowed; the next case needs it
    if isinstance(params, dict) and isinstance(params.get("timeoutMs"), int) and params["timeoutMs"] > 1000:
        params = {**params, "timeoutMs": 1000}
    since = len(world.sidecar.samples())
    answer = world.sidecar.request(method, params, timeout=30)
    if "error" in (answer if isinstance(answer, dict) else {}):
        assert answer["error"]["code"] in (-32602, -32601, p.SERVER_BUSY), answer
    _check_world(world, since)
