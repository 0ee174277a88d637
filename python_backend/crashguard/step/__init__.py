"""The step core every front door shares (torch only): the guarded step, OOM back-off, the batch plan,
checkpoints, distributed agreement, precision, and the run lifecycle (GuardedRun). Never imported by the sidecar."""
