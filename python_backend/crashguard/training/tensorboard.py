"""TensorBoard scalars from the metrics records (logging.tensorboard): a sink of MetricsLog, never a second log.

Every record MetricsLog writes is also passed here: a `step` record's numbers become `train/<field>` (loss,
micro_batch, accumulation, ram_percent, seconds, lr when present), a `val` record's Dice `val/dice_<region>`
(`eval/...` for an evaluation of a checkpoint), a `best` record `val/best_dice_mean`. On resume the writer purges
the events after the checkpoint's step, as MetricsLog.rewind drops the lines. A failing writer is dropped with a
warning: metrics.jsonl is the record, TensorBoard a view.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_NOT_SCALARS = {"type", "time", "step", "epoch"}


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard tags and values of one metrics record (empty for records without a plotted number)."""
    kind = record.get("type")

    def numbers(prefix: str, keep: set[str] | None = None) -> dict[str, float]:
        return {f"{prefix}/{key}": float(value) for key, value in record.items()
                if key not in _NOT_SCALARS and (keep is None or key in keep)
                and isinstance(value, (int, float)) and not isinstance(value, bool)}

    if kind == "step":
        return numbers("train")
    if kind == "val":
        return numbers("eval" if record.get("evaluation") else "val",
                       {k for k in record if k.startswith("dice_")})
    if kind == "best" and isinstance(record.get("dice_mean"), (int, float)):
        return {"val/best_dice_mean": float(record["dice_mean"])}
    return {}


class TensorBoardSink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writer: Any = None

    def open(self, purge_after: int | None) -> None:
        """(Re)open the writer; events with a step above `purge_after` (a dead attempt's) are hidden."""
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        purge = None if purge_after is None else purge_after + 1
        self._writer = SummaryWriter(str(self.directory), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        step = record.get("step")
        try:
            for tag, value in scalars_of(record).items():
                self._writer.add_scalar(tag, value, global_step=int(step) if isinstance(step, int) else None,
                                        walltime=record.get("time"))
            if record.get("type") in ("val", "best"):
                self._writer.flush()  # rare records: visible at once; step scalars flush on the writer's timer
        except Exception as exc:  # a view must not end the run
            log.warning("TensorBoard writer failed, no more TensorBoard scalars for this run: %s", exc)
            self._writer = None

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
