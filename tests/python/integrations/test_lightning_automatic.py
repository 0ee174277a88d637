"""Lightning under automatic optimization: no back-off is possible from outside the module, so a real OOM ends the
fit, with a checkpoint of the last completed step and the cause recorded; resuming from it finishes the run."""

from __future__ import annotations

import json
from pathlib import Path

import integration_helpers  # noqa: F401  (puts examples/ on sys.path)
import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from tiny3d import LOSS, SyntheticVolumes, build_model  # noqa: E402

from crashguard.lightning import CrashGuardCallback  # noqa: E402


class Automatic(pl.LightningModule):
    def __init__(self, oom_at: int | None) -> None:
        super().__init__()
        self.model = build_model()
        self.oom_at = oom_at

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.oom_at is not None and self.global_step == self.oom_at:
            torch.empty(2**42, dtype=torch.uint8)  # torch's real "can't allocate memory" (4 TiB)
        return LOSS(self.model(batch["image"]), batch["label"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=1e-3)


def fit(runs: Path, oom_at: int | None, resume: bool) -> CrashGuardCallback:
    guard = CrashGuardCallback("auto", runs_dir=runs, watchdog=False, handle_signals=False)
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", devices=1, callbacks=[guard], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(SyntheticVolumes(16), batch_size=4)
    trainer.fit(Automatic(oom_at), loader, ckpt_path=guard.newest_checkpoint() if resume else None)
    return guard


def test_an_oom_under_automatic_optimization_checkpoints_the_last_step_and_resumes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="can't allocate memory") as raised:
        fit(runs, oom_at=3, resume=False)
    status = json.loads((runs / "auto" / "status.json").read_text())
    assert status["state"] == "failed" and status["step"] == 3
    assert "automatic optimization: no back-off" in status["exit_cause"] and "cpu_oom" in status["exit_cause"]
    assert Path(status["checkpoint"]).name == "step-00000003.ckpt"
    # The traceback ends with what was saved, how to resume and how to get the back-off.
    [note] = getattr(raised.value, "__notes__", [])
    assert "saved the last completed step (step 3)" in note and "step-00000003.ckpt" in note
    assert "Resume: " in note and "automatic_optimization = False" in note and "guard.step(" in note
    guard = fit(runs, oom_at=None, resume=True)
    assert guard.trainer is not None and guard.trainer.global_step == 6
    assert guard.run is not None and guard.run.checkpoints.saved_step == 6
    resumed = [json.loads(line) for line in (runs / "auto" / "events.jsonl").read_text().splitlines()
               if json.loads(line)["event"] == "resume"]
    assert [e["step"] for e in resumed] == [3]  # the resumed fit continued at step 3, not from the start
    status = json.loads((runs / "auto" / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 6
