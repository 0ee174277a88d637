"""Describes a Python interpreter for the extension, as one JSON line: `python -I bundled/tool/probe.py`.

Imports nothing but the standard library and executes no package's code (find_spec of a top-level name only
looks for it), so probing a workspace's interpreter runs nothing from the workspace. Kept to syntax every
Python 3 parses, so an old interpreter still says which version it is.
"""

import json
import sys


def _found(name):
    try:
        import importlib.util

        return importlib.util.find_spec(name) is not None
    except Exception:
        return False


def _distribution_version(name):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    try:
        return metadata.version(name)
    except Exception:
        return None


def main():
    info = {
        "executable": sys.executable,
        "version": "{}.{}.{}".format(*sys.version_info[:3]),
        "prefix": sys.prefix,
        "virtualEnv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        "crashguard": _distribution_version("crashguard"),
        "pythonBackend": _found("crashguard"),
                "torch": _found("torch"),
        "monai": _found("monai"),
        "pip": _found("pip"),
    }
    sys.stdout.write(json.dumps(info) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
