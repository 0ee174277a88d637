#!/bin/sh
# npm run bundle: what the .vsix carries besides the extension's JavaScript: bundled/libs (the sidecar and its
# libraries, for the target platform) and bundled/wheels (the crashguard wheel that "Set Up Crash Guard
# Training…" installs into the user's environment, the extension's own version). See docs/extension.md.
set -eu
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" scripts/package/bundle_python.py --target "${CRASHGUARD_TARGET:-linux-x64}"
rm -rf bundled/wheels build
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation --wheel-dir bundled/wheels . 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
rm -rf build
ls bundled/wheels/crashguard-*.whl >/dev/null
