"""Describes a Python interpreter for the extension, as one JSON line: `python -I -S bundled/tool/probe.py`.

Imports nothing but the standard library and executes no package's code (find_spec of a top-level name only
looks for it), so probing a workspace's interpreter runs nothing from the workspace. -S keeps `site` from running
at start-up: it would execute the `import` lines of every .pth file in the interpreter's site-packages (a
workspace's own .venv is the workspace's code). So this script finds the site-packages itself, as `site` would,
without executing anything (site_paths.py): a package that only an `import` line of a .pth makes importable (a
setuptools "strict" editable install's finder) is not seen. Kept to syntax every Python 3 parses, so an old
interpreter still says which version it is.

`found` says, for each package training needs, where this interpreter would import it from when started without
the working folder on its path: "isolated" (what `python -I` finds: the interpreter's own site-packages, a
virtual environment, an editable install), else "pythonPath" (an absolute entry of $PYTHONPATH), else "userSite"
(the user's site-packages, outside a virtual environment), else null. The extension picks how to start crashguard
from it (extension/src/cli.ts, crashguardLaunch). `crashguardScript` is the `crashguard` console script of the
installation found, if there is one.
"""

import json
import os
import sys

PACKAGES = ("crashguard", "torch", "monai")


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the extension's own folder, for site_paths
from site_paths import interpreter_site  # noqa: E402  (after the path is set)

del sys.path[0]
PREFIX, IN_VENV, SITE_ENTRIES = interpreter_site()
if sys.flags.no_site:  # started with -S, as the extension does: look where `python -I` would import from
    sys.path.extend(p for p in SITE_ENTRIES if p not in sys.path)


def _spec(name, path=None):
    try:
        import importlib.machinery
        import importlib.util

        if path is None:
            return importlib.util.find_spec(name)
        return importlib.machinery.PathFinder.find_spec(name, path)
    except Exception:
        return None


def _python_path():
    """$PYTHONPATH's absolute entries: a relative or empty one names the working folder, which is never used."""
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p)]


def _user_site():
    """The user's site-packages, where a normal start of this interpreter would use it (never in a venv)."""
    if IN_VENV:
        return None
    try:
        import site

        return site.getusersitepackages()
    except Exception:
        return None


def _where(name):
    if _spec(name) is not None:
        return "isolated"
    if _python_path() and _spec(name, _python_path()) is not None:
        return "pythonPath"
    user = _user_site()
    if user and _spec(name, [user]) is not None:
        return "userSite"
    return None


def _script(where):
    """The crashguard console script next to the installation found."""
    try:
        import sysconfig

        if where == "isolated":
            scripts = sysconfig.get_path("scripts", vars={"base": PREFIX, "platbase": PREFIX})
        elif where == "userSite":
            scripts = sysconfig.get_path("scripts", "{}_user".format(os.name))
        else:
            return None
    except Exception:
        return None
    path = os.path.join(scripts, "crashguard")
    return path if os.path.isfile(path) else None


def _distribution_version(name, where):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    search = {"pythonPath": _python_path(), "userSite": [_user_site()]}.get(where, sys.path)
    try:
        for dist in metadata.distributions(name=name, path=search):
            return dist.version
    except Exception:
        return None
    return None


def main():
    found = dict((name, _where(name)) for name in PACKAGES)
    info = {
        "executable": sys.executable,
        "version": "{}.{}.{}".format(*sys.version_info[:3]),
        "prefix": PREFIX,
        "virtualEnv": IN_VENV,
        "crashguard": _distribution_version("crashguard", found["crashguard"]),
        "found": found,
        "crashguardScript": _script(found["crashguard"]),
        "pip": _spec("pip") is not None,
    }
    sys.stdout.write(json.dumps(info) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
