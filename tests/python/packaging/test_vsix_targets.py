"""Every .vsix target gets psutil's compiled module of its own platform (bundled/requirements.txt has each wheel's
hash), and check_vsix.py reads the module's binary header: another platform's module, a .vsix without a target or
of another target fails the check. `npm run package:all` (make test) builds and checks the real .vsix of each."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from locations import REPO

PACKAGE = REPO / "scripts" / "package"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, PACKAGE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bundle_python = _load("bundle_python")
check_vsix = _load("check_vsix")


@pytest.fixture(scope="module")
def psutil_of(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each target's psutil compiled module, installed the way the bundle installs it (hash-checked)."""
    out: dict[str, bytes] = {}
    for target in bundle_python.TARGETS:
        libs = tmp_path_factory.mktemp(target) / "libs"
        bundle_python.install_wheels(target, libs)
        module, _ = check_vsix.TARGETS[target]
        out[target] = (libs / Path(module).relative_to("bundled/libs")).read_bytes()
    return out


def test_the_targets_are_linux_and_macos_on_both_cpus() -> None:
    assert set(bundle_python.TARGETS) == {"linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"}
    assert set(check_vsix.TARGETS) == set(bundle_python.TARGETS)


@pytest.mark.parametrize("target", ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"])
def test_each_target_bundles_psutil_built_for_it(psutil_of: dict[str, bytes], target: str) -> None:
    assert check_vsix.binary_kind(psutil_of[target]) == check_vsix.TARGETS[target][1]


def _vsix(path: Path, target: str | None, psutil: tuple[str, bytes] | None) -> Path:
    """A .vsix as vsce lays it out, with every file check_vsix requires (contents beside the point)."""
    platform = f' TargetPlatform="{target}"' if target else ""
    manifest = f'<Identity Id="crash-guard"{platform} />'
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("extension.vsixmanifest", f"<PackageManifest><Metadata>{manifest}</Metadata></PackageManifest>")
        z.writestr("extension/package.json", json.dumps({"icon": "media/icon.png"}))
        z.writestr("extension/readme.md", "# Crash Guard\n")
        z.writestr("extension/media/icon.png", b"")
        z.writestr("extension/bundled/wheels/crashguard-0.1.0-py3-none-any.whl", b"")
        for name in check_vsix.REQUIRED:
            if name not in ("package.json", "readme.md"):
                z.writestr(f"extension/{name}", b"")
        if psutil is not None:
            z.writestr(f"extension/{psutil[0]}", psutil[1])
    return path


def test_check_vsix_passes_a_target_with_its_own_psutil(psutil_of: dict[str, bytes], tmp_path: Path) -> None:
    for target in bundle_python.TARGETS:
        module = check_vsix.TARGETS[target][0]
        vsix = _vsix(tmp_path / f"{target}.vsix", target, (module, psutil_of[target]))
        assert check_vsix.main([str(vsix), "--target", target]) == 0, target


@pytest.mark.parametrize(("target", "planted", "expected"), [
    ("linux-x64", "linux-arm64", "psutil's compiled module is ELF aarch64, the linux-x64 .vsix needs ELF x86-64"),
    ("darwin-arm64", "darwin-x64",
     "psutil's compiled module is Mach-O x86-64, the darwin-arm64 .vsix needs Mach-O arm64"),
    ("darwin-x64", "linux-x64", "psutil's compiled module is missing (bundled/libs/psutil/_psutil_osx.abi3.so"),
])
def test_check_vsix_fails_another_platforms_psutil(psutil_of: dict[str, bytes], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], target: str, planted: str,
                                                    expected: str) -> None:
    vsix = _vsix(tmp_path / "wrong.vsix", target, (check_vsix.TARGETS[planted][0], psutil_of[planted]))
    assert check_vsix.main([str(vsix)]) == 1
    assert expected in capsys.readouterr().err


def test_check_vsix_fails_a_vsix_without_its_target_or_of_another(psutil_of: dict[str, bytes], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    module = check_vsix.TARGETS["linux-x64"][0]
    universal = _vsix(tmp_path / "universal.vsix", None, (module, psutil_of["linux-x64"]))
    assert check_vsix.main([str(universal)]) == 1
    assert "no known target platform in extension.vsixmanifest" in capsys.readouterr().err
    x64 = _vsix(tmp_path / "x64.vsix", "linux-x64", (module, psutil_of["linux-x64"]))
    assert check_vsix.main([str(x64), "--target", "linux-arm64"]) == 1
    assert "the .vsix is for linux-x64, not linux-arm64" in capsys.readouterr().err
