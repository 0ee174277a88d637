"""Where `site` would put an interpreter's site-packages on sys.path, found without running `site`.

The extension starts its own scripts with `python -I -S` (the probe, the memory monitor's launcher): -S keeps
`site` from running at start-up, which would execute the `import` lines of every .pth file in the interpreter's
site-packages, and a workspace's own .venv is the workspace's code (issue 21). These functions compute what
site.main() would have added — the virtual environment of pyvenv.cfg (found as site.venv() finds it: under -S,
sys.prefix stays the base installation's), `site.getsitepackages()` of its prefixes and the directory lines of
their .pth files — and execute nothing: an `import` line is skipped. The user's site-packages are left out, as
-I leaves them out. Kept to syntax every Python 3 parses (the probe imports it on any interpreter).
"""

import os
import sys


def _venv_prefix():
    """The virtual environment this interpreter belongs to (its pyvenv.cfg, found as site.venv() finds it), or
    None. Under -S, sys.prefix stays the base installation's: site.py is what would have moved it."""
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    for folder in (exe_dir, os.path.dirname(exe_dir)):
        if os.path.isfile(os.path.join(folder, "pyvenv.cfg")):
            return os.path.dirname(exe_dir), _system_site_packages(os.path.join(folder, "pyvenv.cfg"))
    return None, True


def _system_site_packages(config):
    try:
        with open(config) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip().lower() == "include-system-site-packages":
                    return value.strip().lower() == "true"
    except OSError:
        pass
    return False


def _pth_directories(site_dir):
    """The directory lines of the .pth files in `site_dir`, as site.addpackage() reads them; `import` lines (code)
    are skipped, never executed."""
    found = []
    try:
        names = sorted(n for n in os.listdir(site_dir) if n.endswith(".pth") and not n.startswith("."))
    except OSError:
        return found
    for name in names:
        try:
            with open(os.path.join(site_dir, name), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            if not line.strip() or line.startswith("#") or line.startswith(("import ", "import\t")):
                continue
            path = os.path.join(site_dir, line.rstrip())
            if os.path.isdir(path):
                found.append(os.path.abspath(path))
    return found


def _site_paths():
    """(prefix, in a virtual environment, the entries `site` would add to sys.path) without running site.main()."""
    venv, system = _venv_prefix()
    prefixes = [venv] if venv else [sys.prefix]
    if venv and system:
        prefixes.append(getattr(sys, "base_prefix", sys.prefix))
    try:
        import site  # under -S importing site runs nothing: its main() runs only when sys.flags.no_site is 0

        dirs = site.getsitepackages(prefixes)
    except Exception:
        dirs = []
    entries = []
    for d in dirs:
        if os.path.isdir(d):
            entries.append(d)
            entries.extend(_pth_directories(d))
    return venv or sys.prefix, venv is not None, entries


def interpreter_site():
    """(prefix, in a virtual environment, the entries `site` would add to sys.path)."""
    if not sys.flags.no_site:  # site ran: sys.prefix and sys.path are already what it made them
        return sys.prefix, sys.prefix != getattr(sys, "base_prefix", sys.prefix), []
    return _site_paths()
