"""Cost of a fit: seconds per epoch, cells per second, peak resident memory."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import lightning as L


def maxrss_mb(usage: resource.struct_rusage) -> float:
    """``ru_maxrss`` of a ``getrusage`` / ``os.wait4`` result in MiB (bytes on macOS, KiB
    elsewhere)."""
    peak = usage.ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF))


class Timing(L.Callback):
    """Times training epochs (validation excluded) and counts the cells they saw."""

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self.cells = 0
        self._start = 0.0
        self._stopped = True

    def state_dict(self) -> dict[str, Any]:
        """Epoch times and cells so far (kept in checkpoints: a resumed fit adds to them)."""
        return {"epoch_seconds": list(self.epoch_seconds), "cells": self.cells}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epoch_seconds = [float(s) for s in state_dict.get("epoch_seconds", [])]
        self.cells = int(state_dict.get("cells", 0))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._stopped = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        self.cells += int(batch["index"].shape[0])

    def _stop(self) -> None:
        if not self._stopped:
            self.epoch_seconds.append(time.perf_counter() - self._start)
            self._stopped = True

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs validation inside the training epoch: stop the clock before it
        if not trainer.sanity_checking:
            self._stop()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()
        pl_module.log("time/epoch_seconds", self.epoch_seconds[-1], on_epoch=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # under DDP each process saw its share of the cells: count them all
        if trainer.world_size > 1:
            import torch

            total = trainer.strategy.reduce(torch.tensor(float(self.cells)), reduce_op="sum")
            self.cells = int(total)

    def summary(self) -> dict[str, float | int | None]:
        """``epochs``, ``seconds_per_epoch`` and ``cells_per_second`` (the contracts' cost keys)."""
        total = sum(self.epoch_seconds)
        n = len(self.epoch_seconds)
        return {
            "epochs": n,
            "seconds_per_epoch": total / n if n else None,
            "cells_per_second": self.cells / total if total > 0 else None,
        }
