"""One probe of the micro-batch search (`crashguard find-batch`): real training steps (forward, backward,
optimizer) at a micro-batch, its peak memory and speed."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..guard.cleanup import emergency_cleanup
from ..guard.failures import Failure, describe_failure, is_oom
from ..monitor.peak import PeakRssTracker
from ..step.precision import precision_for
from ..training.config import TrainingConfig
from ..training.loss import build_loss
from ..training.model import build_model
from .samples import crop_pool
from .search import Probe


@dataclass(frozen=True)
class ProbeSettings:
    steps: int = 2  # timed steps per probe, after one warm-up step


class TrainStepProbe:
    """Measures peak process RSS on CPU, or peak reserved VRAM on CUDA, over real training steps."""

    def __init__(self, config: TrainingConfig, device: torch.device, settings: ProbeSettings = ProbeSettings()):
        self.device = device
        self.settings = settings
        self.roi = config.train.roi_size
        self.crops = crop_pool(config)
        torch.manual_seed(config.train.seed)
        self.model = build_model(config.model).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.train.learning_rate)
        self.precision = precision_for(config.train.amp, config.train.amp_dtype, device)  # as the run's
        self.loss_fn = build_loss(config.train.loss)
        self._rss = PeakRssTracker()

    def _step(self, micro: int) -> None:
        images, labels = self.crops.batch(micro)
        x, y = images.to(self.device), labels.to(self.device)
        with self.precision.context(self.device.type):
            loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def warm_up(self) -> None:
        """One unmeasured step: one-time allocations (optimizer state, kernel caches, thread pools) would
        otherwise inflate the first probe's peak and bend the curve the search extrapolates from."""
        self._step(1)
        emergency_cleanup()

    def _begin(self) -> None:
        emergency_cleanup()  # start every probe from the same floor
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._rss.start()

    def _peak(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_reserved(self.device))
        return self._rss.stop()[1]

    def __call__(self, micro: int) -> Probe:
        self._begin()
        failure: Failure | None = None
        seconds = 0.0
        try:
            self._step(micro)  # warm-up: allocator pools, optimizer state
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            started = time.perf_counter()
            for _ in range(self.settings.steps):
                self._step(micro)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - started
        except Exception as exc:
            if not is_oom(exc):
                raise
            failure = describe_failure(exc)
        if failure is not None:
            # Out of the except block, so the failed step's tensors are gone before the next probe.
            self.optimizer.zero_grad(set_to_none=True)
            peak = self._peak()
            emergency_cleanup()
            return Probe(micro_batch=micro, peak=peak, oom=True, error=failure.describe())
        return Probe(micro_batch=micro, peak=self._peak(), steps_per_second=self.settings.steps / seconds)
