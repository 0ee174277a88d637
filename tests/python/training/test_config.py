"""Config: strict typed model, one-line errors with exit code 2 before anything is written, schema in sync."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from training_helpers import REPO, crashguard

from crashguard.training.config import ConfigError, load_config, parse_config
from crashguard.training.schema import SCHEMA_PATH, schema_text


def test_committed_schema_matches_the_model() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), \
        "run: python -m crashguard.training.schema"


def test_preset_is_valid_and_low_memory() -> None:
    config = load_config(REPO / "config" / "safe_training.json")
    assert config.data.root == Path("data") and config.data.task == "Task01_BrainTumour"
    assert config.model.name == "segresnet" and config.model.init_filters == 8
    assert max(config.train.roi_size) <= 48


@pytest.mark.parametrize(("text", "expected"), [
    ('{"train": {"epochs": "2"}}', "train.epochs: Input should be a valid integer"),
    ('{"train": {"epochz": 2}}', "train.epochz: unknown key"),
    ('{"train": {"roi_size": [30, 32, 32]}}', "train.roi_size: [30, 32, 32] is impossible"),
    ('{"train": {"roi_size": [32, 32]}}', "train.roi_size"),
    ('{"data": {"cache_rate": 2.0}}', "data.cache_rate: must lie between 0 and 1"),
    ('{"data": {"cache_rate": "most"}}', "data.cache_rate"),
    ('{"train": {"micro_batch": 8, "effective_batch": 4}}', "train.micro_batch: must not exceed"),
    ('{"model": {"init_filters": 4}}', "model.init_filters: must be a multiple of 8"),
    ('{"train": ', "not valid JSON"),
    ('{"train": {"min_lr": 0.01, "learning_rate": 0.001}}', "train.min_lr: must not exceed learning_rate"),
    ('{"train": {"lr_schedule": "step"}}', "train.lr_schedule: Input should be 'constant', 'cosine' or 'poly'"),
    ('{"train": {"amp_dtype": "bf16"}}', "train.amp_dtype: Input should be 'float16' or 'bfloat16'"),
    ('{"train": {"grad_clip_norm": 0}}', "train.grad_clip_norm: Input should be greater than 0"),
    ('{"memory": {"vram_budget_gb": "8GB"}}', "memory.vram_budget_gb: Input should be a valid number"),
    ('{"memory": {"backoff_ram_fraction": 90}}', "memory.backoff_ram_fraction: a fraction of the machine's RAM in "
                                                 "(0, 1], not a percent: e.g. 0.9 for 90%, got 90"),
    ('{"memory": {"ram_critical": 0.7, "log_ram_fraction": 0.8}}', "memory: log_ram_fraction (0.8) must not exceed "
                                                                  "backoff_ram_fraction (0.7)"),
    ('{"memory": {"ram_warning": 0.5, "log_ram_fraction": 0.6}}', "memory: ram_warning is the old name of "
                                                                 "log_ram_fraction: give only log_ram_fraction"),
])
def test_bad_values_give_one_line_naming_the_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_schema_key_is_allowed() -> None:
    assert parse_config('{"$schema": "./safe_training.schema.json"}').schema_ref == "./safe_training.schema.json"


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"train": {"learning_rate": "fast"}}, "train.learning_rate: Input should be a valid number"),
    ({"trainer": {}}, "trainer: unknown key"),
    ({"train": {"roi_size": [22, 24, 24]}}, "train.roi_size: [22, 24, 24] is impossible"),
    ({"data": {"root": "/nonexistent/data"}}, "data.root: /nonexistent/data/Task01_BrainTumour does not exist"),
])
def test_cli_refuses_bad_config_before_writing(tmp_path: Path, write_config: Callable[..., Path],
                                               overrides: dict, expected: str) -> None:
    config = write_config(**overrides)
    result = crashguard("train", "--config", str(config), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()
    assert json.loads(config.read_text())  # the config itself is untouched


def test_the_old_ram_threshold_names_still_work_with_a_one_line_warning_each(
        write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(memory={"ram_warning": 0.7, "ram_critical": 0.85})
    memory = load_config(path).memory
    assert (memory.log_ram_fraction, memory.backoff_ram_fraction) == (0.7, 0.85)
    assert capsys.readouterr().err.splitlines() == [
        f"crashguard: {path}: memory.ram_warning is deprecated: rename it to memory.log_ram_fraction (same meaning, "
        "a fraction of the machine's RAM)",
        f"crashguard: {path}: memory.ram_critical is deprecated: rename it to memory.backoff_ram_fraction (same "
        "meaning, a fraction of the machine's RAM)"]
    load_config(path, warn=False)
    assert capsys.readouterr().err == ""
    load_config(write_config("new.json", memory={"log_ram_fraction": 0.7}))
    assert capsys.readouterr().err == ""  # the new names: nothing to say


def test_the_editors_schema_keeps_the_old_names_as_deprecated() -> None:
    memory = json.loads(schema_text())["$defs"]["MemoryConfig"]["properties"]
    for old, new in (("ram_warning", "log_ram_fraction"), ("ram_critical", "backoff_ram_fraction")):
        assert memory[old]["deprecated"] is True and new in memory[old]["description"]
        assert "not the editor's crashGuard." in memory[new]["description"] and memory[new]["maximum"] == 1.0
