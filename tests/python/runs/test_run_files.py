"""Files of a runs folder, on real files: strict JSON in and out, the checked read (symlink, owner, mode, size,
FIFO), status validation field by field, and what RunHook writes."""

from __future__ import annotations

import json
import math
import os
import stat
import time
from pathlib import Path

import pytest

from crashguard.runs.files import MAX_RUN_FILE_BYTES, RefusedFile, read_checked_json, write_json_at
from crashguard.runs.hook import RunHook
from crashguard.runs.status import InvalidStatus, RunState, RunStatus, parse_status
from crashguard.sidecar.protocol import to_wire
from crashguard.util.json_io import json_text, strict_loads, write_json_atomic

NOBODY = 65534


def _strict(text: str) -> object:
    """A parser that refuses what JSON does not have (what a strict client such as JSON.parse would do)."""
    def refuse(name: str) -> object:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e999}',
                                  '[' * 100_000 + ']' * 100_000, b'\xff\xfe{}'])
def test_strict_loads_refuses_what_is_not_finite_json(text: str | bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        strict_loads(text)


def test_everything_written_is_strict_json_with_null_for_non_finite(tmp_path: Path) -> None:
    data = {"loss": math.nan, "up": math.inf, "down": -math.inf, "nested": [1.5, {"x": math.nan}], "n": 3}
    expected = {"loss": None, "up": None, "down": None, "nested": [1.5, {"x": None}], "n": 3}
    assert _strict(json_text(data)) == expected
    assert _strict(json_text(data, indent=2)) == expected
    write_json_atomic(tmp_path / "a.json", data)
    assert _strict((tmp_path / "a.json").read_text()) == expected
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_json_at(fd, "b.json", data)
    finally:
        os.close(fd)
    assert _strict((tmp_path / "b.json").read_text()) == expected
    assert to_wire({"loss": math.nan, "list": [math.inf]}) == {"loss": None, "list": [None]}


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "run"
    path.mkdir(mode=0o755)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    yield path, fd
    os.close(fd)


def test_checked_read_refuses_symlinks_other_owners_writable_files_fifos_and_big_files(
        folder: tuple[Path, int], tmp_path: Path) -> None:
    path, fd = folder
    good = path / "status.json"
    good.write_text('{"ok": true}')
    good.chmod(0o644)
    assert read_checked_json("status.json", fd) == {"ok": True}

    target = tmp_path / "elsewhere.json"
    target.write_text('{"ok": true}')
    (path / "link.json").symlink_to(target)
    with pytest.raises(RefusedFile, match="symlink"):
        read_checked_json("link.json", fd)

    (path / "writable.json").write_text("{}")
    (path / "writable.json").chmod(0o666)
    with pytest.raises(RefusedFile, match="writable by group or others"):
        read_checked_json("writable.json", fd)

    (path / "theirs.json").write_text("{}")
    os.chown(path / "theirs.json", NOBODY, NOBODY)
    with pytest.raises(RefusedFile, match=f"owned by uid {NOBODY}"):
        read_checked_json("theirs.json", fd)

    os.mkfifo(path / "fifo.json", 0o600)  # opening a FIFO for reading would block forever without O_NONBLOCK
    with pytest.raises(RefusedFile, match="not a regular file"):
        read_checked_json("fifo.json", fd)

    big = path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(MAX_RUN_FILE_BYTES + 1)
    with pytest.raises(RefusedFile, match="over the 65536-byte limit"):
        read_checked_json("big.json", fd)

    (path / "nan.json").write_text('{"create_time": NaN}')
    with pytest.raises(RefusedFile, match="not valid JSON"):
        read_checked_json("nan.json", fd)


GOOD = {"version": 2, "name": "r", "pid": 1234, "create_time": 1.7e9, "state": "running", "rank": 0,
        "world_size": 1, "step": 3, "loss": 0.5, "lock_dev": 1, "lock_ino": 2}


@pytest.mark.parametrize(("change", "field"), [
    ({"create_time": None}, "create_time"),
    ({"create_time": "1700000000"}, "create_time"),
    ({"create_time": -1.0}, "create_time"),
    ({"pid": 0}, "pid"),
    ({"pid": -5}, "pid"),
    ({"pid": True}, "pid"),
    ({"pid": 12.0}, "pid"),
    ({"pid": "1234"}, "pid"),
    ({"world_size": "2"}, "world_size"),
    ({"world_size": 0}, "world_size"),
    ({"world_size": 10**9}, "world_size"),
    ({"rank": "/../../x"}, "rank"),
    ({"rank": 2, "world_size": 2}, "rank"),
    ({"rank": -1}, "rank"),
    ({"state": "owned"}, "state"),
    ({"state": 3}, "state"),
    ({"step": -1}, "step"),
    ({"loss": "nan"}, "loss"),
    ({"name": "../etc"}, "name"),
    ({"name": 7}, "name"),
    ({"last_event": "x" * 10_000}, "last_event"),
    ({"lock_ino": "2"}, "lock_ino"),
])
def test_a_status_with_a_bad_field_is_refused_naming_it(change: dict, field: str) -> None:
    with pytest.raises(InvalidStatus, match=rf"^{field}:"):
        parse_status({**GOOD, **change})


def test_a_valid_status_parses_and_every_field_has_a_rule() -> None:
    status = parse_status({**GOOD, "unknown_future_field": [1, 2]})
    assert (status.pid, status.create_time, status.loss, status.lock_ino) == (1234, 1.7e9, 0.5, 2)
    assert isinstance(parse_status({**GOOD, "create_time": 1700000000}).create_time, float)
    for key in ("name", "pid", "create_time"):
        with pytest.raises(InvalidStatus, match=f"^{key}: missing"):
            parse_status({k: v for k, v in GOOD.items() if k != key})
    with pytest.raises(InvalidStatus, match="expected a JSON object"):
        parse_status([GOOD])
    # Every RunStatus field is checked: a field added without a rule makes importing status.py fail.
    from crashguard.runs import status as status_module
    assert set(status_module._TYPES) == set(RunStatus.__dataclass_fields__)


def test_the_checker_covers_the_shapes_a_new_field_may_take() -> None:
    from typing import Any

    from crashguard.runs.status import _check_value, _understood

    assert _check_value("argv", ["python", "-m", "x"], list[str]) == ["python", "-m", "x"]
    with pytest.raises(InvalidStatus, match=r"^argv\[1\]: expected a string, got int"):
        _check_value("argv", ["python", 3], list[str])
    with pytest.raises(InvalidStatus, match=r"^resume: expected an object"):
        _check_value("resume", ["x"], dict[str, Any] | None)
    assert _check_value("resume", None, dict[str, Any] | None) is None
    assert _check_value("resume", {"cwd": "/x", "argv": ["a"]}, dict[str, Any] | None) == {"cwd": "/x", "argv": ["a"]}
    with pytest.raises(InvalidStatus, match=r"^env\.A: expected a string"):
        _check_value("env", {"A": 1}, dict[str, str])
    with pytest.raises(InvalidStatus, match=r"^urgent: expected true or false"):
        _check_value("urgent", 1, bool)
    assert not _understood(set[str]) and not _understood(tuple[int, int]) and not _understood(dict[int, str])


def test_hook_writes_null_for_a_nan_loss_and_takes_numpy_like_scalars(tmp_path: Path) -> None:
    hook = RunHook("diverging", runs_dir=tmp_path, write_interval=0.0)
    hook.start()
    try:
        hook.update(step=1, loss=math.nan)
        text = (hook.run_dir / "status.json").read_text()
        assert _strict(text)["loss"] is None
        hook.update(loss=math.inf)
        assert _strict((hook.run_dir / "status.json").read_text())["loss"] is None

        class Scalar:  # numpy/torch scalars: __index__ / __float__
            def __index__(self) -> int:
                return 7

            def __float__(self) -> float:
                return 0.25

        hook.update(step=Scalar(), loss=Scalar())
        written = _strict((hook.run_dir / "status.json").read_text())
        assert (written["step"], written["loss"]) == (7, 0.25)
        with pytest.raises(TypeError, match=r"RunStatus\.step: expected an integer"):
            hook.update(step="7")
        with pytest.raises(TypeError, match=r"RunStatus\.step: expected an integer"):
            hook.update(step=7.5)
        with pytest.raises(AttributeError, match="no field 'nonsense'"):
            hook.update(nonsense=1)
    finally:
        hook.finish(RunState.FINISHED)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "../x"}, "run name"),
    ({"name": "a/b"}, "run name"),
    ({"name": ".hidden"}, "run name"),
    ({"name": "r", "rank": "/../../x", "world_size": 2}, "rank"),
    ({"name": "r", "rank": 2, "world_size": 2}, "rank"),
    ({"name": "r", "world_size": "2"}, "world_size"),
])
def test_hook_refuses_names_and_ranks_that_are_not_plain(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunHook(runs_dir=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_hook_refuses_a_planted_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    """A cloned repository can carry runs/<name>/control -> somewhere: the hook must not delete or write there."""
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "keep.json").write_text("{}")
    run_dir = tmp_path / "runs" / "cloned"
    run_dir.mkdir(parents=True)
    (run_dir / "control").symlink_to(victim)
    hook = RunHook("cloned", runs_dir=tmp_path / "runs")
    with pytest.raises(RefusedFile, match="symlink"):
        hook.start()
    assert (victim / "keep.json").exists() and sorted(p.name for p in victim.iterdir()) == ["keep.json"]

    lock_run = tmp_path / "runs" / "lock-link"
    lock_run.mkdir()
    (lock_run / ".lock").symlink_to(victim / "created-by-the-hook")  # a dangling symlink: O_CREAT must not follow
    with pytest.raises(RefusedFile, match="symlink"):
        RunHook("lock-link", runs_dir=tmp_path / "runs").start()
    assert not (lock_run / "status.json").exists()

    (tmp_path / "runs" / "linked").symlink_to(victim)  # a symlinked run folder
    with pytest.raises(RefusedFile, match="symlink"):
        RunHook("linked", runs_dir=tmp_path / "runs").start()
    assert sorted(p.name for p in victim.iterdir()) == ["keep.json"]


def test_hook_makes_its_folders_private_under_a_group_writable_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        hook = RunHook("umask", runs_dir=tmp_path / "runs")
        hook.start()
    finally:
        os.umask(old)
    try:
        for path in (hook.run_dir, hook.run_dir / "control"):
            assert not stat.S_IMODE(path.stat().st_mode) & 0o022, oct(path.stat().st_mode)
        for name in ("status.json", ".lock"):
            assert not stat.S_IMODE((hook.run_dir / name).stat().st_mode) & 0o077
        written = _strict((hook.run_dir / "status.json").read_text())
        lock = (hook.run_dir / ".lock").stat()
        assert (written["lock_dev"], written["lock_ino"], written["version"]) == (lock.st_dev, lock.st_ino, 2)
        assert os.stat(f"/proc/self/fd/{written['lock_fd']}").st_ino == lock.st_ino
        assert written["updated"] <= time.time()
    finally:
        hook.finish(RunState.FINISHED)
