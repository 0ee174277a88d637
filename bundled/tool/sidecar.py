"""Starts the Crash Guard sidecar from the extension's own files: `python -I bundled/tool/sidecar.py`.

The extension ships the sidecar part of crashguard and its pure-Python dependencies in bundled/libs (and
psutil built for the platform of the .vsix); nothing is imported from the workspace or from the interpreter's
own site-packages where the bundle has the module. `-I` keeps the script's folder, the current directory, the
user's site-packages and every PYTHON* variable out of sys.path; this file puts bundled/libs first.
Kept to syntax every Python 3 parses, so an old interpreter gets a clear message instead of a SyntaxError.
"""

import os
import sys

MINIMUM = (3, 10)
LIBS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "libs")
EXIT_TOO_OLD = 3
EXIT_NOT_BUNDLED = 4


def main():
    if sys.version_info[:2] < MINIMUM:
        sys.stderr.write("Crash Guard: the sidecar needs Python {}.{} or newer; {} is Python {}\n".format(
            MINIMUM[0], MINIMUM[1], sys.executable, sys.version.split()[0]))
        return EXIT_TOO_OLD
    sys.path.insert(0, LIBS)
    import crashguard  # after the path is set

    origin = os.path.dirname(os.path.dirname(os.path.abspath(crashguard.__file__)))
    if origin != LIBS:  # never run a crashguard from anywhere else (a workspace, another install)
        sys.stderr.write("Crash Guard: crashguard was imported from {}, not from {}\n".format(origin, LIBS))
        return EXIT_NOT_BUNDLED
    from crashguard.sidecar.main import main as serve

    return serve()


if __name__ == "__main__":
    sys.exit(main())
