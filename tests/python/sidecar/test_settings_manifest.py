"""package.json's `contributes.configuration` is the one declaration of every setting's default, range and choices
(issue 19): the monitor's settings (crashguard/sidecar/settings.py) agree with it, and the check notices drift."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from locations import REPO

from crashguard.sidecar.settings import CRITICAL_ACTIONS, FIELDS, Settings, SettingsError

PROPERTIES: dict[str, dict[str, Any]] = json.loads((REPO / "package.json").read_text())[
    "contributes"]["configuration"]["properties"]
# never sent to the monitor
EXTENSION_ONLY = {"pythonPath", "showNotifications", "notificationCooldownMinutes", "gpuStatusBar", "monitorPerWindow"}
DERIVED = {"runsDirectories"}  # every folder's runsDirectory, made absolute by the extension
KINDS = {"int": "integer", "number": "number", "bool": "boolean", "choice": "string", "path": "string"}


def drift(properties: dict[str, dict[str, Any]]) -> list[str]:
    """Where the monitor's settings differ from `properties` (package.json's)."""
    declared = {key.removeprefix("crashGuard."): value for key, value in properties.items()}
    out = [f"{key}: the monitor's, not declared" for key in sorted(set(FIELDS) - DERIVED - set(declared))]
    out += [f"{key}: declared, unknown to the monitor"
            for key in sorted(set(declared) - EXTENSION_ONLY - set(FIELDS))]
    defaults = Settings().to_wire()
    for key, field in FIELDS.items():
        if key not in declared:
            continue
        d = declared[key]
        if d.get("default") != defaults[key]:
            out.append(f"{key}: default {d.get('default')!r}, the monitor's {defaults[key]!r}")
        if d.get("type") != KINDS[field.kind]:
            out.append(f"{key}: type {d.get('type')}, the monitor's {KINDS[field.kind]}")
        low, high = d.get("minimum"), d.get("maximum")
        if field.kind in ("int", "number") and (low, high) != (field.low, field.high):
            out.append(f"{key}: range {low}-{high}, the monitor's {field.low:g}-{field.high:g}")
        choices = list(CRITICAL_ACTIONS) if field.kind == "choice" else None
        if d.get("enum") != choices:
            out.append(f"{key}: enum {d.get('enum')}, the monitor's {choices}")
    return out


def test_the_monitors_settings_agree_with_the_manifest() -> None:
    assert drift(PROPERTIES) == []


@pytest.mark.parametrize(("key", "change", "found"), [
    ("ramCriticalPercent", {"default": 85}, "ramCriticalPercent: default 85, the monitor's 90.0"),
    ("pressureSeconds", {"minimum": 1}, "pressureSeconds: range 1-300, the monitor's 2-300"),
    ("topProcesses", {"maximum": 10}, "topProcesses: range 0-10, the monitor's 0-20"),
    ("sampleIntervalMs", {"type": "number"}, "sampleIntervalMs: type number, the monitor's integer"),
    ("criticalAction", {"enum": ["none"]},
     "criticalAction: enum ['none'], the monitor's ['none', 'checkpointAndStop']"),
])
def test_a_drifted_declaration_is_noticed(key: str, change: dict[str, Any], found: str) -> None:
    drifted = copy.deepcopy(PROPERTIES)
    drifted[f"crashGuard.{key}"].update(change)
    assert drift(drifted) == [found]
    del drifted[f"crashGuard.{key}"]
    assert f"{key}: the monitor's, not declared" in drift(drifted)


def test_critical_below_warning_is_refused_naming_the_field() -> None:
    with pytest.raises(SettingsError, match=r"ramCriticalPercent: 70 is below ramWarningPercent \(80\)"):
        Settings().updated({"ramCriticalPercent": 70})
    assert Settings().updated({"vramWarningPercent": 95, "vramCriticalPercent": 95}).vram_critical_percent == 95
