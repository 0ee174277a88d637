"""A guarded training run (crashguard.guarded_run) whose every step takes at least --step-seconds: the examples'
small 3D net does a real forward and backward pass, then the step waits out the rest of its time, standing in
for the compute of a big model at a large ROI on a CPU. The drill needs a long step, not a busy CPU.

Each completed step is appended to <runs-dir>/<name>/steps.jsonl with the index of the batch it consumed, so a
test can prove that a resumed run lost and repeated no step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "examples"))  # tiny3d: the examples' model and synthetic volumes

import torch  # noqa: E402
from tiny3d import LOSS, batch_for, build_model  # noqa: E402

import crashguard  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--name", default="slow")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--step-seconds", type=float, default=12.0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    log = Path(args.runs_dir, args.name, "steps.jsonl")

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        started = time.monotonic()
        loss = LOSS(model(batch["image"]), batch["label"])
        time.sleep(max(0.0, args.step_seconds - (time.monotonic() - started)))
        return loss

    with crashguard.guarded_run(args.name, model=model, optimizer=optimizer, runs_dir=args.runs_dir,
                                resume_args=["--resume"]) as run:
        start = run.resume() if args.resume else 0
        for step in range(start, args.steps):
            loss = run.step(batch_for(step, size=16), forward)
            with log.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"step": step + 1, "batch": step, "loss": loss}) + "\n")
            if run.should_stop:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
