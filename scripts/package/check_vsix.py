"""Checks a packaged .vsix before anyone installs it: what the marketplace page shows resolves inside it (the
README's images, the icon, LICENSE, CHANGELOG), the bundled sidecar and its libraries are there, the training
code and development files are not.

    python scripts/package/check_vsix.py crash-guard.vsix
"""

from __future__ import annotations

import json
import re
import sys
import zipfile

EXT = "extension/"
# vsce stores README.md as readme.md, CHANGELOG.md as changelog.md and LICENSE as LICENSE.txt.
REQUIRED = [
    "package.json", "readme.md", "LICENSE.txt", "changelog.md", "dist/extension.js", "media/report.js",
    "config/safe_training.json", "config/safe_training.schema.json", "bundled/tool/sidecar.py", "bundled/tool/probe.py",
    "bundled/tool/site_paths.py",
    "bundled/libs/crashguard/sidecar/server.py", "bundled/libs/pygls/__init__.py",
    "bundled/libs/lsprotocol/types.py", "bundled/libs/psutil/__init__.py", "bundled/libs/pynvml.py",
]
# python_backend/ beside bundled/ would also make the launcher's development mode take it (bundled/tool/sidecar.py).
FORBIDDEN = re.compile(r"(^|/)(__pycache__|\.venv|node_modules|\.e2e|tests|crashguard/training|python_backend)(/|$)"
                       r"|\.pyc$")


def main(path: str) -> int:
    with zipfile.ZipFile(path) as vsix:
        names = {n.removeprefix(EXT) for n in vsix.namelist() if n.startswith(EXT)}
        manifest = json.loads(vsix.read(EXT + "package.json"))
        readme = vsix.read(EXT + "readme.md").decode()
    problems = [f"missing: {n}" for n in REQUIRED if n not in names]
    problems += [f"missing icon: {manifest.get('icon')}" for _ in [0] if manifest.get("icon") not in names]
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    problems += [f"README image not in the package: {i}" for i in images if not i.startswith("http") and i not in names]
    problems += [f"should not be packaged: {n}" for n in sorted(names) if FORBIDDEN.search(n)]
    if not any(re.match(r"bundled/libs/psutil/_psutil_linux.*\.so$", n) for n in names):
        problems.append("psutil's compiled module is missing (bundle for linux-x64)")
    if not any(re.match(r"bundled/wheels/crashguard-.*\.whl$", n) for n in names):
        problems.append("the crashguard wheel is missing (bundled/wheels)")
    for problem in problems:
        print(f"check_vsix: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_vsix: {path} ok ({len(names)} files, {len(images)} README images)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
