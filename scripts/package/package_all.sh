#!/bin/sh
# npm run package:all (make test): the .vsix of every target, each checked by check_vsix.py for its own platform:
# dist/vsix/crash-guard-<target>.vsix. Only psutil's compiled module differs between targets, so the extension is
# type-checked, linted and bundled once (scripts/package/prepublished.mjs), the crashguard wheel built once, and each
# target gets its own bundled/libs. linux-x64 goes last, so bundled/libs is left as `npm run package` makes it.
set -eu
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
TARGETS=$("$PY" -c "import sys; sys.path.insert(0, 'scripts/package'); import bundle_python as b; print(' '.join(b.TARGETS))")
OUT=dist/vsix
mkdir -p "$OUT"
CRASHGUARD_TARGET=linux-x64 sh scripts/package/bundle.sh   # bundled/wheels, once
for target in $(printf '%s\n' $TARGETS | grep -v '^linux-x64$') linux-x64; do
  "$PY" scripts/package/bundle_python.py --target "$target"
  npx vsce package --target "$target" --no-dependencies --no-rewrite-relative-links --out "$OUT/crash-guard-$target.vsix"
  python3 scripts/package/check_vsix.py "$OUT/crash-guard-$target.vsix" --target "$target"
done
