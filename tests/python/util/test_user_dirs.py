"""The user's private folders: created 0700, closed when ours and open, refused when a symlink or someone else's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crashguard.util.user_dirs import UnsafeDirectory, ensure_private_dir, runtime_dir, state_dir


def test_a_new_folder_is_private(tmp_path: Path) -> None:
    made = ensure_private_dir(tmp_path / "a" / "crashguard")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_an_open_folder_of_ours_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "crashguard"
    path.mkdir(mode=0o777)
    os.chmod(path, 0o777)
    ensure_private_dir(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    (tmp_path / "crashguard").symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="symlink"):
        ensure_private_dir(tmp_path / "crashguard")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_someone_elses_folder_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a folder of another user")
    path = tmp_path / "crashguard"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    with pytest.raises(UnsafeDirectory, match="belongs to uid 65534"):
        ensure_private_dir(path)


def test_state_and_runtime_follow_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert state_dir() == tmp_path / "state" / "crashguard"
    assert runtime_dir() == runtime / "crashguard"
    os.chmod(runtime, 0o755)  # a runtime folder others can read is not the session's: fall back to /tmp
    assert runtime_dir() == Path("/tmp") / f"crashguard-{os.geteuid()}"
