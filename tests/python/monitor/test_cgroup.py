"""cgroup v1/v2 limits parsed from fixture trees shaped like /sys/fs/cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest

from crashguard.monitor.cgroup import CgroupWatch, read_cgroup_memory
from crashguard.monitor.host import read_ram

GIB = 2**30
V2_SELF = "0::/user.slice/job.scope\n"
V1_SELF = "12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n"


def _write(directory: Path, **files: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text)


def _v2_tree(tmp_path: Path, own_max: str, parent_max: str | None = None) -> Path:
    root = tmp_path / "cg2"
    _write(root, cgroup__controllers="cpu memory\n")
    if parent_max is not None:
        _write(root / "user.slice", memory__max=f"{parent_max}\n", memory__current=f"{3 * GIB}\n",
               memory__stat="anon 1\ninactive_file 0\n")
    _write(root / "user.slice" / "job.scope", memory__max=f"{own_max}\n", memory__current=f"{3 * GIB}\n",
           memory__stat=f"anon 1\nfile 5\ninactive_file {GIB}\nactive_file 2\n")
    return root


def test_v2_limit_and_working_set(tmp_path: Path) -> None:
    found = read_cgroup_memory(_v2_tree(tmp_path, own_max=str(4 * GIB)), V2_SELF)
    assert found is not None
    assert (found.version, found.limit, found.usage) == (2, 4 * GIB, 3 * GIB)
    assert found.working_set == 2 * GIB  # page cache that can be dropped is not "used"
    assert found.path.endswith("job.scope")


def test_v2_max_means_unlimited(tmp_path: Path) -> None:
    assert read_cgroup_memory(_v2_tree(tmp_path, own_max="max"), V2_SELF) is None


def test_v2_tightest_ancestor_wins(tmp_path: Path) -> None:
    found = read_cgroup_memory(_v2_tree(tmp_path, own_max="max", parent_max=str(2 * GIB)), V2_SELF)
    assert found is not None
    assert found.limit == 2 * GIB
    assert found.path.endswith("user.slice")


def test_v1_limit(tmp_path: Path) -> None:
    root = tmp_path / "cg1"
    _write(root / "memory" / "docker" / "abc", memory__limit_in_bytes=f"{8 * GIB}\n",
           memory__usage_in_bytes=f"{5 * GIB}\n", memory__stat=f"cache 9\ntotal_inactive_file {GIB}\n")
    found = read_cgroup_memory(root, V1_SELF)
    assert found is not None
    assert (found.version, found.limit, found.working_set) == (1, 8 * GIB, 4 * GIB)


def test_v1_unlimited_sentinel(tmp_path: Path) -> None:
    root = tmp_path / "cg1"
    _write(root / "memory" / "docker" / "abc", memory__limit_in_bytes="9223372036854771712\n",
           memory__usage_in_bytes="100\n")
    assert read_cgroup_memory(root, V1_SELF) is None


def test_v1_namespaced_path_falls_back_to_mount_root(tmp_path: Path) -> None:
    # Inside a cgroup namespace /proc/self/cgroup names a path the mount does not show.
    root = tmp_path / "cg1"
    _write(root / "memory", memory__limit_in_bytes=f"{GIB}\n", memory__usage_in_bytes=f"{GIB // 2}\n")
    found = read_cgroup_memory(root, V1_SELF)
    assert found is not None and found.limit == GIB


@pytest.mark.parametrize("proc_cgroup", ["", "garbage without colons\n", V2_SELF])
def test_missing_files_mean_no_limit(tmp_path: Path, proc_cgroup: str) -> None:
    assert read_cgroup_memory(tmp_path / "nothing", proc_cgroup) is None


def test_garbage_limit_is_ignored(tmp_path: Path) -> None:
    assert read_cgroup_memory(_v2_tree(tmp_path, own_max="not-a-number"), V2_SELF) is None


def test_ram_percentages_are_of_the_cgroup_limit(tmp_path: Path) -> None:
    reading = read_ram(_v2_tree(tmp_path, own_max=str(4 * GIB)), V2_SELF)
    if reading.physical_total <= 4 * GIB:
        pytest.skip("this machine has no more RAM than the fixture's limit")
    assert reading.limit_source == "cgroup v2"
    assert reading.total == 4 * GIB
    assert reading.available <= 2 * GIB  # limit minus working set
    assert reading.percent == pytest.approx(100 * reading.used / (4 * GIB), abs=0.01)
    assert reading.percent >= 50


def test_limit_above_physical_ram_is_ignored(tmp_path: Path) -> None:
    reading = read_ram(_v2_tree(tmp_path, own_max=str(1 << 50)), V2_SELF)
    assert reading.limit_source == "physical"


def test_a_watch_reads_use_every_time_and_finds_the_limit_again_when_it_changes(tmp_path: Path) -> None:
    root = _v2_tree(tmp_path, own_max=str(4 * GIB))
    own = root / "user.slice" / "job.scope"
    watch = CgroupWatch(refresh=3600, root=root, proc_cgroup=V2_SELF)
    first = watch.read()
    assert first is not None and (first.limit, first.usage) == (4 * GIB, 3 * GIB)
    _write(own, memory__current=f"{GIB}\n")
    again = watch.read()
    assert again is not None and (again.limit, again.usage, again.path) == (4 * GIB, GIB, first.path)
    _write(own, memory__max=f"{2 * GIB}\n")  # the limit itself changed: found again at once
    changed = watch.read()
    assert changed is not None and changed.limit == 2 * GIB
    reading = read_ram(cgroup=watch.read)
    if reading.physical_total > 2 * GIB:
        assert (reading.limit_source, reading.total) == ("cgroup v2", 2 * GIB)
    _write(own, memory__max="max\n")  # limit lifted
    assert watch.read() is None
    assert CgroupWatch(root=tmp_path / "nothing", proc_cgroup=V2_SELF).read() is None
