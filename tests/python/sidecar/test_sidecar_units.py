"""The sidecar's pure parts: settings validation, hysteresis, the trend forecast, camelCase on the wire."""

from __future__ import annotations

import pytest

from crashguard.sidecar import protocol as p
from crashguard.sidecar.forecast import History, describe, least_squares_slope, next_crossing
from crashguard.sidecar.levels import Level, LevelTracker, next_level
from crashguard.sidecar.settings import (
    Settings,
    SettingsError,
    settings_from_configuration,
    settings_from_initialization,
)


def test_settings_defaults_and_partial_update() -> None:
    s = settings_from_initialization({"settings": {"sampleIntervalMs": 500, "autoCleanup": True}})
    assert s.sample_interval_ms == 500 and s.auto_cleanup and s.ram_warning_percent == 80
    changed = settings_from_configuration(s, {"crashGuard": {"criticalAction": "checkpointAndStop"}})
    assert changed.critical_action == "checkpointAndStop" and changed.sample_interval_ms == 500
    assert settings_from_configuration(s, None) is s
    assert Settings().to_wire()["ramCriticalPercent"] == 90.0


@pytest.mark.parametrize(("changes", "field"), [
    ({"sampleIntervalMs": 50}, "sampleIntervalMs"),
    ({"sampleIntervalMs": 1000.5}, "sampleIntervalMs"),
    ({"ramWarningPercent": "80"}, "ramWarningPercent"),
    ({"ramWarningPercent": True}, "ramWarningPercent"),
    ({"ramWarningPercent": 95}, "ramCriticalPercent"),  # above critical (90)
    ({"vramCriticalPercent": 101}, "vramCriticalPercent"),
    ({"autoCleanup": 1}, "autoCleanup"),
    ({"criticalAction": "kill"}, "criticalAction"),
    ({"runsDirectory": ""}, "runsDirectory"),
    ({"topProcesses": 21}, "topProcesses"),
    ({"colour": "red"}, "colour"),
])
def test_bad_settings_name_the_field_and_change_nothing(changes: dict, field: str) -> None:
    before = Settings()
    with pytest.raises(SettingsError) as info:
        before.updated(changes)
    assert info.value.field == field and field in str(info.value)
    assert before == Settings()


def test_hysteresis_enters_at_threshold_and_leaves_three_points_below() -> None:
    seq = [79.9, 80.0, 79.5, 78.0, 80.5, 77.1, 76.9, 90.0, 88.0, 86.9, 60.0]
    level, seen = Level.NORMAL, []
    for pct in seq:
        level = next_level(level, pct, 80, 90)
        seen.append(level.value)
    assert seen == ["normal", "warning", "warning", "warning", "warning", "warning", "normal", "critical",
                    "critical", "warning", "normal"]


def test_tracker_reports_each_change_once() -> None:
    tracker = LevelTracker()
    changes = [tracker.update("RAM", pct, 80, 90)[1] for pct in (81, 79, 80.5, 79.9, 76, 76)]
    real = [c for c in changes if c is not None]
    assert [(c.previous.value, c.level.value) for c in real] == [("normal", "warning"), ("warning", "normal")]
    assert tracker.peek("RAM", 95, 80, 90) is Level.CRITICAL and tracker.current("RAM") is Level.NORMAL


def test_least_squares_trend_and_time_to_threshold() -> None:
    assert least_squares_slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)
    history = History(window=30)
    gib = 2**30
    for t in range(0, 11):  # 10 GiB used, rising 0.1 GiB/s, with a little noise
        history.add(float(t), 10 * gib + 0.1 * gib * t + (1 if t % 2 else -1) * 2**20)
    trend = history.trend()
    assert trend is not None and trend.bytes_per_second == pytest.approx(0.1 * gib, rel=0.05)
    crossing = next_crossing(trend, total=16 * gib, level=Level.NORMAL, warning_percent=80, critical_percent=90)
    # 80 % of 16 GiB = 12.8 GiB; now 11 GiB -> 18 s at 0.1 GiB/s.
    assert crossing is not None and crossing.level == "warning" and crossing.seconds == pytest.approx(18, abs=1)
    assert describe("RAM", crossing) == "RAM warning in ~18 s"
    at_critical = next_crossing(trend, total=16 * gib, level=Level.CRITICAL, warning_percent=50,
                                critical_percent=60)
    assert at_critical is not None and at_critical.level == "full"


def test_no_forecast_when_falling_flat_or_far() -> None:
    history = History()
    for t in range(5):
        history.add(float(t), 100.0 - t)
    trend = history.trend()
    assert trend is not None and next_crossing(trend, 1000, Level.NORMAL, 80, 90) is None
    slow = History()
    for t in range(5):
        slow.add(float(t), 100.0 + t * 1e-3)
    assert next_crossing(slow.trend(), 10**9, Level.NORMAL, 80, 90) is None  # years away
    short = History()
    short.add(0.0, 1.0)
    short.add(0.5, 2.0)
    assert short.trend() is None  # too few points to call a trend


def test_wire_payloads_are_camel_case() -> None:
    fc = p.Forecast("RAM", "critical", 40.0, 52428800.0, "RAM critical in ~40 s")
    assert p.to_wire(fc) == {"resource": "RAM", "level": "critical", "seconds": 40.0,
                             "bytesPerSecond": 52428800.0, "message": "RAM critical in ~40 s", "kind": "trend"}
    assert p.to_wire({"rss_freed": 1, "steps": [{"name": "gc", "freed": None}]}) == \
        {"rssFreed": 1, "steps": [{"name": "gc", "freed": None}]}


@pytest.mark.parametrize(("parse", "params", "field"), [
    (p.CleanupParams.parse, {"runs": "a"}, "runs"),
    (p.CleanupParams.parse, {"timeoutMs": -1}, "timeoutMs"),
    (p.CleanupParams.parse, [1, 2], "params"),
    (p.StopRunParams.parse, {}, "run"),
    (p.StopRunParams.parse, {"run": "x", "force": True}, "force"),
    (p.parse_process_detail, {"pid": "12"}, "pid"),
    (p.parse_empty, {"x": 1}, "x"),
])
def test_malformed_params_name_the_field(parse, params, field: str) -> None:
    with pytest.raises(p.ParamsError) as info:
        parse(params)
    assert info.value.field == field
