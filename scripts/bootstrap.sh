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
# a torch already in the venv (e.g. the CUDA build a GPU user chose) is kept as it is.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  TORCH=${CRASHGUARD_TORCH:-torch==2.13.0}
  if has_gpu; then
    echo "bootstrap: GPU found, installing $TORCH (CUDA build)"
    $PIP install -q "$TORCH"
  elif $PIP install -q --no-index --no-deps "$TORCH" 2>/dev/null; then
    echo "bootstrap: no GPU, installed $TORCH from a local CPU wheel"
    $PIP install -q "$TORCH"  # its small dependencies
  else
    echo "bootstrap: no GPU, installing $TORCH from PyTorch's CPU index"
    $PIP install -q "$TORCH" --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple
  fi
fi

stamp="$VENV/.crashguard-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing python_backend with its train, realistic and dev extras"
  $PIP install -q -e ".[train,realistic,dev]"
  touch "$stamp"
fi

if [ -f package-lock.json ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  echo "bootstrap: installing the extension's npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
