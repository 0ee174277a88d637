#!/usr/bin/env bash
# The main job, end to end on this machine: synthetic Task01 data, safe MONAI training under the memory guard,
# a segmentation by safe inference, the run's plots, and the packaged VS Code extension (.vsix).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CONFIG=config/safe_training.json
RUN=demo
RUN_DIR=runs/$RUN
TASK_DIR=data/Task01_BrainTumour

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/6 synthetic Task01_BrainTumour data ($TASK_DIR)"
[ -f "$TASK_DIR/dataset.json" ] || $PY -m crashguard sample-data --out "$TASK_DIR"

step "2/6 data check: every case read once"
$PY -m crashguard check-data --config "$CONFIG"

step "3/6 safe training (memory guard, OOM back-off, checkpoints) -> $RUN_DIR"
rm -rf "$RUN_DIR"  # the demo's own run: start fresh each time
$PY -m crashguard train --config "$CONFIG" --run-name "$RUN" --resume never

step "4/6 safe inference on one case (sliding window, back-off on OOM)"
checkpoint=$(ls "$RUN_DIR"/checkpoints/*.pt | sort | tail -n 1)
image=$(ls "$TASK_DIR"/imagesTr/*.nii.gz | sort | head -n 1)
label="$TASK_DIR/labelsTr/$(basename "$image")"
$PY -m crashguard infer --checkpoint "$checkpoint" --input "$image" --out "$RUN_DIR/predictions"
prediction="$RUN_DIR/predictions/$(basename "$image" .nii.gz)_seg.nii.gz"

step "5/6 plots: memory timeline, training curves, segmentation overlay"
$PY -m crashguard plots --run "$RUN_DIR" --image "$image" --label "$label" --prediction "$prediction"

step "6/6 the VS Code extension, packaged"
npm run --silent package

step "done"
echo "run:        $RUN_DIR (status.json, metrics.jsonl, checkpoints/, predictions/, plots/)"
echo "extension:  crash-guard.vsix  (code --install-extension crash-guard.vsix)"
