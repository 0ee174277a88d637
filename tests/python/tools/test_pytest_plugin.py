"""The memory plugin on a real inner pytest run (pytester, in a subprocess so peaks are the inner run's)."""

from __future__ import annotations

import pytest

from python_backend.cli.units import parse_size

pytest_plugins = ["pytester"]

INNER_TESTS = """
def _hold(mib):
    block = bytearray(mib * 2**20)
    block[::4096] = b"\\x01" * len(block[::4096])  # touch every page: resident, not just reserved
    return block

def test_small():
    assert len(_hold(20)) > 0

def test_big():
    assert len(_hold(500)) > 0

def test_medium():
    assert len(_hold(100)) > 0
"""


def test_heaviest_test_is_reported_and_fails_the_budget(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess("--memory-budget=300MB", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_big _*",
        "memory budget exceeded: peak RSS grew by 5*MiB (budget 300.0 MiB;*",
    ])
    summary = result.stdout.str().split("heaviest tests (peak RSS growth)")[1].splitlines()
    rows = [line for line in summary if "test_inner.py::" in line]
    assert rows[0].endswith("test_inner.py::test_big")
    assert rows[1].endswith("test_inner.py::test_medium")
    growth_mib = float(rows[0].split()[0])
    assert 480 <= growth_mib <= 540


def test_guard_without_budget_only_reports(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess("--memory-guard", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert "heaviest tests" in result.stdout.str()


def test_marker_overrides_the_budget(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS + """
import pytest

@pytest.mark.memory_budget("1GB")
def test_big_allowed():
    assert len(_hold(500)) > 0
""")
    result = pytester.runpytest_subprocess("--memory-budget=300MB", "-p", "no:cacheprovider", "-k", "big")
    result.assert_outcomes(passed=1, failed=1)


def test_plugin_off_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "heaviest tests" not in result.stdout.str()


@pytest.mark.parametrize(("text", "size"), [("300MB", 300 * 2**20), ("1.5G", int(1.5 * 2**30)),
                                            ("512MiB", 512 * 2**20), ("1024", 1024), ("2 gb", 2 * 2**30)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size("lots")
