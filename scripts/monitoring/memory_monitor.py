#!/usr/bin/env python3
"""The seed's command line: `python scripts/monitoring/memory_monitor.py [--interval S] [--json] [--once]`.

A thin entry to `crashguard monitor`; works from a checkout without installing the package.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python_backend"))

from crashguard.cli import main

if __name__ == "__main__":
    sys.exit(main(["monitor", *sys.argv[1:]]))
