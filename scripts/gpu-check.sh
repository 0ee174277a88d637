#!/usr/bin/env bash
# GPU truth: every VRAM path of Crash Guard checked on a real NVIDIA GPU, in one run (a few minutes on one GPU),
# ending with one table (docs/gpu.md says what each row means). It runs the `gpu`-marked tests and installs nothing
# beyond the README's set-up (scripts/bootstrap.sh, run first when .venv is missing).
#
#   bash scripts/gpu-check.sh            # the table is printed and written to runs/gpu-check/table.md
#   CRASHGUARD_PYTHON=/path/to/python bash scripts/gpu-check.sh   # an interpreter with CUDA torch + this package
#   bash scripts/gpu-check.sh -x -v      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${CRASHGUARD_PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ] && [ -z "${CRASHGUARD_PYTHON:-}" ]; then
  echo "gpu-check: no .venv yet: running the README's set-up (scripts/bootstrap.sh)"
  bash scripts/bootstrap.sh
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: nvidia-smi finds no NVIDIA GPU here: this check needs a machine with one (and its driver)" >&2
  exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu-check: $PY has no CUDA build of torch (or it cannot reach the GPU):" >&2
  "$PY" -c "import torch; print('  torch', torch.__version__, 'built for CUDA', torch.version.cuda)" >&2 || true
  echo "  install a CUDA torch into the venv (the set-up keeps a torch it finds) or set CRASHGUARD_PYTHON" >&2
  exit 2
fi

export CRASHGUARD_GPU_TABLE=${CRASHGUARD_GPU_TABLE:-runs/gpu-check/table.md}
mkdir -p "$(dirname "$CRASHGUARD_GPU_TABLE")"
rm -f "$CRASHGUARD_GPU_TABLE"

started=$(date +%s)
set +e
timeout --signal=INT --kill-after=20 460 "$PY" -m pytest -m gpu -p no:cacheprovider -q -rs tests/python "$@"
status=$?
set -e
echo "gpu-check: $(( $(date +%s) - started )) s; table in $CRASHGUARD_GPU_TABLE"
[ -f "$CRASHGUARD_GPU_TABLE" ] || echo "gpu-check: no table written (pytest exit $status)" >&2
exit $status
