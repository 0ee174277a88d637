"""Builds bundled/libs: what the extension's sidecar imports, so the monitor needs nothing installed.

    python scripts/package/bundle_python.py [--target linux-x64] [--out bundled]

1. the pinned, hash-checked wheels of bundled/requirements.txt for the target platform and Python 3.10+
   (pip's own index configuration decides where they come from);
2. the sidecar's part of crashguard: the packages util, monitor, guard, runs and sidecar (started by
   sidecar/main.py) and the package's __init__.py; never step/ or training/, which need torch.

bundled/libs is generated (git-ignored) and packed into the .vsix of that target (`vsce package --target`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "bundled"
SOURCE = ROOT / "python_backend" / "crashguard"
# The sidecar's import closure inside crashguard (tests/python/sidecar/test_bundle.py checks it is enough).
PACKAGES = ("util", "monitor", "guard", "runs", "sidecar")
FILES = ("__init__.py",)
# vsce's target -> pip's platform tags; each has its psutil wheel's hash in bundled/requirements.txt. Not win32:
# the monitor's run registry is POSIX (dir_fd opens, O_NOFOLLOW, flock, file owners), so it cannot start there.
PLATFORMS = {
    "linux-x64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64"],
    "linux-arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64"],
    "darwin-x64": ["macosx_10_9_x86_64"],
    "darwin-arm64": ["macosx_11_0_arm64"],
}
TARGETS = tuple(PLATFORMS)  # every .vsix `npm run package:all` builds
MINIMUM_PYTHON = "3.10"


def install_wheels(target: str, libs: Path) -> None:
    platforms = [arg for tag in PLATFORMS[target] for arg in ("--platform", tag)]
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--target", str(libs), "--no-deps", "--only-binary=:all:", "--implementation", "cp",
                           "--python-version", MINIMUM_PYTHON, *platforms, "--require-hashes", "--no-compile",
                           "-r", str(BUNDLED / "requirements.txt")], capture_output=True, text=True)
    # pip's notes about index locations of the machine's own configuration are noise here; the rest is not.
    for line in done.stderr.splitlines():
        if "is neither a file nor a directory" not in line:
            print(line, file=sys.stderr)
    if done.returncode != 0:
        raise SystemExit(f"bundle_python: pip install failed (exit {done.returncode})")


def copy_backend(libs: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(SOURCE / package, libs / "crashguard" / package, ignore=ignore)
    for name in FILES:
        (libs / "crashguard" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SOURCE / name, libs / "crashguard" / name)


def build(out: Path, target: str) -> Path:
    """out/libs (and out/tool, when out is not bundled/ itself); returns out/libs."""
    libs = out / "libs"
    shutil.rmtree(libs, ignore_errors=True)
    install_wheels(target, libs)
    for leftover in ("bin", "example.py"):  # wheels' console scripts and nvidia-ml-py's sample: never imported
        path = libs / leftover
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
    copy_backend(libs)
    for cache in libs.rglob("__pycache__"):
        shutil.rmtree(cache)
    if out.resolve() != BUNDLED:
        shutil.copytree(BUNDLED / "tool", out / "tool", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return libs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="linux-x64", choices=sorted(PLATFORMS))
    parser.add_argument("--out", type=Path, default=BUNDLED, help="folder that gets libs/ (and tool/)")
    args = parser.parse_args()
    libs = build(args.out, args.target)
    size = sum(f.stat().st_size for f in libs.rglob("*") if f.is_file())
    print(f"bundle_python: {libs} for {args.target}, {size / 2**20:.1f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
