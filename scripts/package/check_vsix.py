"""Checks a packaged .vsix before anyone installs it: what the marketplace page shows resolves inside it (the
README's images, the icon, LICENSE, CHANGELOG), the bundled memory monitor and its libraries are there, psutil's
compiled module is the one of the .vsix's target platform (its file format and CPU read from the binary itself),
the training code and development files are not.

    python scripts/package/check_vsix.py crash-guard.vsix [--target linux-x64]
"""

from __future__ import annotations

import argparse
import json
import re
import struct
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
# vsce's target -> (psutil's compiled module, the binary format and CPU it must be built for).
TARGETS = {
    "linux-x64": ("bundled/libs/psutil/_psutil_linux.abi3.so", "ELF x86-64"),
    "linux-arm64": ("bundled/libs/psutil/_psutil_linux.abi3.so", "ELF aarch64"),
    "darwin-x64": ("bundled/libs/psutil/_psutil_osx.abi3.so", "Mach-O x86-64"),
    "darwin-arm64": ("bundled/libs/psutil/_psutil_osx.abi3.so", "Mach-O arm64"),
}
ELF_MACHINES = {0x3E: "x86-64", 0xB7: "aarch64"}
MACHO_CPUS = {0x01000007: "x86-64", 0x0100000C: "arm64"}
FORBIDDEN = re.compile(r"(^|/)(__pycache__|\.venv|node_modules|\.e2e|tests|crashguard/training|python_backend)(/|$)"
                       r"|\.pyc$")


def binary_kind(data: bytes) -> str:
    """ "ELF x86-64", "Mach-O arm64", … read from a compiled module's header; "unknown …" otherwise."""
    if data[:4] == b"\x7fELF" and len(data) >= 20:
        order = "<" if data[5] == 1 else ">"
        machine = struct.unpack_from(f"{order}H", data, 18)[0]
        return f"ELF {ELF_MACHINES.get(machine, hex(machine))}"
    if data[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe") and len(data) >= 8:
        cpu = struct.unpack_from("<I", data, 4)[0]
        return f"Mach-O {MACHO_CPUS.get(cpu, hex(cpu))}"
    return f"unknown format {data[:4]!r}"


def target_of(vsix: zipfile.ZipFile) -> str | None:
    """The TargetPlatform vsce wrote into extension.vsixmanifest (None: a universal .vsix)."""
    found = re.search(r'TargetPlatform="([^"]+)"', vsix.read("extension.vsixmanifest").decode())
    return found.group(1) if found else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vsix")
    parser.add_argument("--target", choices=sorted(TARGETS), help="the platform the .vsix must be for")
    args = parser.parse_args(argv)
    path = args.vsix
    with zipfile.ZipFile(path) as vsix:
        names = {n.removeprefix(EXT) for n in vsix.namelist() if n.startswith(EXT)}
        manifest = json.loads(vsix.read(EXT + "package.json"))
        readme = vsix.read(EXT + "readme.md").decode()
        target = target_of(vsix)
        module, wanted = TARGETS.get(target or "", (None, None))
        binary = vsix.read(EXT + module) if module and module in names else None
    problems = [f"missing: {n}" for n in REQUIRED if n not in names]
    problems += [f"missing icon: {manifest.get('icon')}" for _ in [0] if manifest.get("icon") not in names]
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    problems += [f"README image not in the package: {i}" for i in images if not i.startswith("http") and i not in names]
    problems += [f"should not be packaged: {n}" for n in sorted(names) if FORBIDDEN.search(n)]
    if args.target and target != args.target:
        problems.append(f"the .vsix is for {target or 'every platform'}, not {args.target}")
    if module is None:
        problems.append(f"no known target platform in extension.vsixmanifest ({target}): package with --target")
    elif binary is None:
        problems.append(f"psutil's compiled module is missing ({module} for {target})")
    elif binary_kind(binary) != wanted:
        problems.append(f"psutil's compiled module is {binary_kind(binary)}, the {target} .vsix needs {wanted}")
    others = [n for n in names if re.match(r"bundled/libs/psutil/_psutil_(linux|osx|windows)", n) and n != module]
    problems += [f"another platform's psutil module: {n}" for n in others]
    if not any(re.match(r"bundled/wheels/crashguard-.*\.whl$", n) for n in names):
        problems.append("the crashguard wheel is missing (bundled/wheels)")
    for problem in problems:
        print(f"check_vsix: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_vsix: {path} ok for {target} ({len(names)} files, {len(images)} README images)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
