"""Starts Crash Guard's memory monitor from the extension's own files: `python -I -S bundled/tool/sidecar.py`.

The extension ships the monitor's part of crashguard and its pure-Python dependencies in bundled/libs (and
psutil built for the platform of the .vsix); nothing is imported from the workspace or from the interpreter's
own site-packages. `-I` keeps the script's folder, the current directory, the user's site-packages and every
PYTHON* variable out of sys.path; `-S` keeps `site` from running, so no .pth file of the interpreter's
site-packages runs (a workspace's .venv is the workspace's code) and site-packages are not on sys.path at all.
This file puts bundled/libs first and refuses a crashguard imported from anywhere else.

`--development` (passed only by an extension host started for development, F5 "Run Crash Guard Extension"): when
this launcher sits in a source checkout (python_backend/crashguard beside bundled/), the monitor runs from that
checkout, with the interpreter's own site-packages for its dependencies (found by site_paths.py without running
any .pth file), so a contributor's F5 works without `npm run bundle` and sees edits on a restart. A packaged
extension has no python_backend/ beside bundled/, so there the flag changes nothing: only bundled/libs is ever
accepted.

Kept to syntax every Python 3 parses, so an old interpreter gets a clear message instead of a SyntaxError.
"""

import os
import sys

MINIMUM = (3, 10)
BUNDLED = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBS = os.path.join(BUNDLED, "libs")
CHECKOUT = os.path.join(os.path.dirname(BUNDLED), "python_backend")  # only in a source checkout
DEVELOPMENT_FLAG = "--development"
EXIT_TOO_OLD = 3
EXIT_NOT_BUNDLED = 4


def _source():
    """Where crashguard must come from: bundled/libs, or the checkout for a development host in a checkout."""
    development = DEVELOPMENT_FLAG in sys.argv[1:]
    sys.argv[1:] = [a for a in sys.argv[1:] if a != DEVELOPMENT_FLAG]
    if development and os.path.isfile(os.path.join(CHECKOUT, "crashguard", "__init__.py")):
        return CHECKOUT
    return LIBS


def main():
    if sys.version_info[:2] < MINIMUM:
        sys.stderr.write("Crash Guard: the memory monitor needs Python {}.{} or newer; {} is Python {}\n".format(
            MINIMUM[0], MINIMUM[1], sys.executable, sys.version.split()[0]))
        return EXIT_TOO_OLD
    source = _source()
    sys.path.insert(0, source)
    if source == CHECKOUT:  # pygls, psutil from the interpreter's site-packages (development only)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from site_paths import interpreter_site

        del sys.path[0]
        sys.path.extend(p for p in interpreter_site()[2] if p not in sys.path)
    import crashguard  # after the path is set

    origin = os.path.dirname(os.path.dirname(os.path.abspath(crashguard.__file__)))
    if origin != source:  # never run a crashguard from anywhere else (a workspace, another install)
        sys.stderr.write("Crash Guard: crashguard was imported from {}, not from {}\n".format(origin, source))
        return EXIT_NOT_BUNDLED
    if source == CHECKOUT:
        sys.stderr.write("Crash Guard: development mode: the memory monitor runs from {}\n".format(CHECKOUT))
    from crashguard.sidecar.main import main as serve

    # A development host's shared monitor is a build of its own: it never joins an installed extension's.
    return serve(development=source == CHECKOUT)


if __name__ == "__main__":
    sys.exit(main())
