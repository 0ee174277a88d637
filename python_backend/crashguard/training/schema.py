"""The JSON schema of the training config, committed as config/safe_training.schema.json for the editor.

Regenerate after changing config.py:  python -m crashguard.training.schema
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..util.json_io import json_text
from .config import TrainingConfig

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "config" / "safe_training.schema.json"


def schema_text() -> str:
    schema = TrainingConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json_text(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
