"""The memory plugin on a real inner pytest run (pytester, in a subprocess so peaks are the inner run's)."""

from __future__ import annotations

import pytest

from crashguard.util.units import parse_size

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
        "memory budget exceeded: peak RSS grew by [45]*MiB (budget 300.0 MiB;*",
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


def test_cleanup_only_after_a_test_that_grew_past_the_threshold(pytester: pytest.Pytester) -> None:
    """A full cleanup costs tens of ms in a big process; it runs after the 500 and 100 MiB tests, not the 20 MiB
    one (default threshold 64 MiB), and after every test with threshold 0. The peaks stay exact either way."""
    pytester.makepyfile(test_inner=INNER_TESTS)
    for option, cleanups in (("--memory-guard", "2 runs"), ("--memory-cleanup-threshold=0", "3 runs")):
        result = pytester.runpytest_subprocess("--memory-guard", option, "-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)
        text = result.stdout.str()
        assert "tests measured by VmHWM; cleanup " in text and f": {cleanups})" in text, text[-600:]
        rows = {line.split()[-1].split("::")[-1]: float(line.split()[0]) for line in
                text.split("heaviest tests (peak RSS growth)")[1].splitlines() if "test_inner.py::" in line}
        assert 480 <= rows["test_big"] <= 540 and 90 <= rows["test_medium"] <= 130 and rows["test_small"] <= 40


def test_a_bad_cleanup_threshold_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("--memory-guard", "--memory-cleanup-threshold=lots", "-p",
                                           "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--memory-cleanup-threshold: " in result.stderr.str()


def test_plugin_off_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "heaviest tests" not in result.stdout.str()


LOADED = """
import sys

def test_what_the_plugin_loaded():
    ours = sorted(m for m in sys.modules if m.startswith("crashguard"))
    print("LOADED", " ".join(ours))
"""


@pytest.mark.parametrize("switch", [[], ["--memory-guard"], ["--memory-budget=2GB"]])
def test_switched_off_the_plugin_imports_only_its_options(pytester: pytest.Pytester, switch: list[str]) -> None:
    """Every pytest run of an environment with Crash Guard installed loads the plugin: switched off it must not
    import the measuring half (psutil, the monitors, the guards); switched on it does."""
    pytester.makepyfile(test_inner=LOADED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *switch)
    result.assert_outcomes(passed=1)
    [line] = [line for line in result.stdout.lines if "LOADED " in line]
    loaded = set(line.split("LOADED ", 1)[1].split())
    assert "crashguard.pytest_plugin" in loaded
    measuring = {"crashguard.pytest_plugin.memory_guard", "crashguard.monitor.peak", "crashguard.guard.cleanup"}
    options_only = {"crashguard", "crashguard.pytest_plugin", "crashguard.util", "crashguard.util.version"}
    assert measuring <= loaded if switch else loaded <= options_only, loaded


@pytest.mark.parametrize(("text", "size"), [("300MB", 300 * 2**20), ("1.5G", int(1.5 * 2**30)),
                                            ("512MiB", 512 * 2**20), ("1024", 1024), ("2 gb", 2 * 2**30)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size("lots")
