#!/usr/bin/env bash
# Installs what the demo and the tests need, idempotently: a Python venv (.venv) with torch, the package and its
# extras, and the extension's npm packages. Safe to re-run; a second run does almost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
PIP="$VENV/bin/python -m pip"

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

# torch is installed on its own so set-up never pulls a multi-GB CUDA build onto a machine without a GPU, and
# a torch already in the venv (e.g. the CUDA build a GPU user chose) is kept as it is. Which index serves the CPU
# build is yours to say (README, "Set-up"): $CRASHGUARD_TORCH_INDEX, else whatever pip's own configuration finds
# without an index (a local wheel, find-links); nothing else is assumed.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  TORCH=${CRASHGUARD_TORCH:-torch==2.13.0}
  if has_gpu; then
    echo "bootstrap: GPU found, installing $TORCH (the build your package index serves)"
    $PIP install -q "$TORCH"
  elif [ -n "${CRASHGUARD_TORCH_INDEX:-}" ]; then
    echo "bootstrap: no GPU, installing $TORCH from \$CRASHGUARD_TORCH_INDEX"
    $PIP install -q --no-deps "$TORCH" --index-url "$CRASHGUARD_TORCH_INDEX"
    $PIP install -q "$TORCH"  # its small dependencies, from pip's configured index
  elif $PIP install -q --no-index --no-deps "$TORCH" 2>/dev/null; then
    echo "bootstrap: no GPU, installed $TORCH from a local CPU wheel"
    $PIP install -q "$TORCH"  # its small dependencies
  else
    echo "bootstrap: no GPU and no CPU build of $TORCH found without an index. Set CRASHGUARD_TORCH_INDEX to the" >&2
    echo "bootstrap: package index that serves PyTorch's CPU wheels (see the README), or install torch into $VENV" >&2
    echo "bootstrap: yourself; a plain install here would pull the multi-GB CUDA build." >&2
    exit 1
  fi
fi

stamp="$VENV/.crashguard-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing crashguard with its train, realistic and dev extras"
  $PIP install -q -e ".[train,realistic,dev]"
  touch "$stamp"
fi

if [ -f package-lock.json ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  echo "bootstrap: installing the extension's npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
