"""The sidecar's settings: a frozen dataclass, built from the client's camelCase JSON with validation that names
the offending field. A rejected update leaves the previous settings in force (the caller keeps the old object).

The extension's package.json (`contributes.configuration`) is the one declaration of every setting's default,
range and choices; the defaults and FIELDS here are checked against it (tests/python/sidecar/
test_settings_manifest.py). A critical level below its warning level is refused, as the extension refuses it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs.stall import DEFAULT_FLOOR_SECONDS

CRITICAL_ACTIONS = ("none", "checkpointAndStop")
HYSTERESIS_POINTS = 3.0  # a level is left only this many percentage points below its threshold


class SettingsError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Settings:
    sample_interval_ms: int = 1000
    ram_warning_percent: float = 80.0
    ram_critical_percent: float = 90.0
    vram_warning_percent: float = 85.0
    vram_critical_percent: float = 95.0
    auto_cleanup: bool = False
    critical_action: str = "none"
    runs_directory: str = "runs"
    top_processes: int = 5
    hung_after_seconds: float = DEFAULT_FLOOR_SECONDS  # a run silent this long (at least) is reported hung
    # Absolute runs directories, one per workspace folder (the extension sends them); None: `runs_directory`.
    runs_directories: tuple[str, ...] | None = None
    # Memory pressure (PSI): a warning when tasks were stalled on memory this share of the last pressure_seconds,
    # "some" (at least one task stalled) or "full" (all of them at once), even below the RAM percent thresholds.
    pressure_some_percent: float = 20.0
    pressure_full_percent: float = 10.0
    pressure_seconds: float = 10.0

    @property
    def interval(self) -> float:
        return self.sample_interval_ms / 1000.0

    def runs_path(self) -> Path:
        """The runs directory; a relative one resolves against the sidecar's cwd."""
        return Path(self.runs_directory).expanduser().resolve()

    def runs_paths(self) -> list[Path]:
        """Every runs directory to watch: `runsDirectories` when the client sent them, else `runsDirectory`."""
        if self.runs_directories is None:
            return [self.runs_path()]
        return list(dict.fromkeys(Path(d).resolve() for d in self.runs_directories))

    def updated(self, changes: Any) -> Settings:
        """A new Settings with `changes` (camelCase keys, whole or partial) applied; raises SettingsError."""
        if changes is None:
            return self
        if not isinstance(changes, dict):
            raise SettingsError("settings", f"expected an object, got {_type_name(changes)}")
        values = dataclasses.asdict(self)
        for key, raw in changes.items():
            spec = FIELDS.get(key)
            if spec is None:
                raise SettingsError(str(key), f"unknown setting (known: {', '.join(sorted(FIELDS))})")
            values[spec.name] = spec.check(key, raw)
        for kind in ("ram", "vram"):
            warning, critical = values[f"{kind}_warning_percent"], values[f"{kind}_critical_percent"]
            if critical < warning:
                raise SettingsError(f"{kind}CriticalPercent",
                                    f"{critical:g} is below {kind}WarningPercent ({warning:g})")
        return Settings(**values)

    def to_wire(self) -> dict[str, Any]:
        return {_CAMEL[name]: value for name, value in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Field:
    """How one camelCase setting maps and is checked: its Settings attribute, kind, and range (numbers)."""

    name: str
    kind: str  # "int", "number", "bool", "choice", "path", "paths"
    low: float = 0
    high: float = 0

    def check(self, key: str, raw: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(raw, bool):
                raise SettingsError(key, f"expected true or false, got {_type_name(raw)}")
            return raw
        if self.kind == "choice":
            if raw not in CRITICAL_ACTIONS:
                raise SettingsError(key, f"expected one of {', '.join(CRITICAL_ACTIONS)}, got {raw!r}")
            return raw
        if self.kind == "path":
            if not isinstance(raw, str) or not raw.strip():
                raise SettingsError(key, f"expected a non-empty path, got {raw!r}")
            return raw.strip()
        if self.kind == "paths":
            return _absolute_paths(key, raw, int(self.high))
        # bool is an int in Python; JSON true is not a number here.
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise SettingsError(key, f"expected a number, got {_type_name(raw)}")
        if self.kind == "int":
            if isinstance(raw, float) and not raw.is_integer():
                raise SettingsError(key, f"expected an integer, got {raw}")
            raw = int(raw)
        if not self.low <= raw <= self.high:
            raise SettingsError(key, f"{raw:g} is outside {self.low:g}-{self.high:g}")
        return raw if self.kind == "int" else float(raw)


FIELDS = {
    "sampleIntervalMs": Field("sample_interval_ms", "int", 200, 60000),
    "ramWarningPercent": Field("ram_warning_percent", "number", 1, 100),
    "ramCriticalPercent": Field("ram_critical_percent", "number", 1, 100),
    "vramWarningPercent": Field("vram_warning_percent", "number", 1, 100),
    "vramCriticalPercent": Field("vram_critical_percent", "number", 1, 100),
    "autoCleanup": Field("auto_cleanup", "bool"),
    "criticalAction": Field("critical_action", "choice"),
    "runsDirectory": Field("runs_directory", "path"),
    "topProcesses": Field("top_processes", "int", 0, 20),
    "hungAfterSeconds": Field("hung_after_seconds", "number", 1, 86400),
    "runsDirectories": Field("runs_directories", "paths", 0, 64),
    "pressureSomePercent": Field("pressure_some_percent", "number", 1, 100),
    "pressureFullPercent": Field("pressure_full_percent", "number", 1, 100),
    "pressureSeconds": Field("pressure_seconds", "number", 2, 300),
}
_CAMEL = {spec.name: key for key, spec in FIELDS.items()}


def _absolute_paths(key: str, raw: Any, most: int) -> tuple[str, ...] | None:
    """runsDirectories: null, or a list of at most `most` absolute paths (relative ones would depend on the
    sidecar's cwd, which is never a workspace folder)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > most:
        raise SettingsError(key, f"expected a list of at most {most} absolute paths, got {_type_name(raw)}")
    for item in raw:
        if not isinstance(item, str) or not os.path.isabs(item) or "\0" in item:
            raise SettingsError(key, f"expected absolute paths, got {item!r}")
    return tuple(raw)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object", type(None): "null"}.get(
        type(value), type(value).__name__)


def settings_from_initialization(options: Any) -> Settings:
    """initializationOptions is `{"settings": {...}}`; absent settings mean the defaults."""
    if options is None:
        return Settings()
    if not isinstance(options, dict):
        raise SettingsError("initializationOptions", f"expected an object, got {_type_name(options)}")
    return Settings().updated(options.get("settings"))


def settings_from_configuration(current: Settings, params_settings: Any) -> Settings:
    """didChangeConfiguration's `settings` is VS Code's shape, `{"crashGuard": {...}}`; null changes nothing
    (a client using the pull model sends it)."""
    if params_settings is None:
        return current
    if not isinstance(params_settings, dict):
        raise SettingsError("settings", f"expected an object, got {_type_name(params_settings)}")
    return current.updated(params_settings.get("crashGuard"))
