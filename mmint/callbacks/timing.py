"""Cost of a fit: seconds per epoch, cells per second, peak resident memory."""

from __future__ import annotations

import resource
import statistics
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
    """Peak resident set size of this process in MiB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own
    address space. ``ru_maxrss`` is not that after an ``exec``: it keeps the high-water mark
    of the address space the process replaced, which for a child started by ``subprocess``
    (``vfork`` + ``exec``) is its parent's, so a small child of a large parent would report
    the parent's peak. Elsewhere, ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF))


def own_and_children_peak_rss_mb() -> float:
    """The larger of this process's peak RSS and its finished children's (MiB)."""
    return max(peak_rss_mb(), maxrss_mb(resource.getrusage(resource.RUSAGE_CHILDREN)))


def median_epoch_seconds(start: float, ends: list[float]) -> float | None:
    """Median of the intervals between consecutive epoch ends (the first from ``start``),
    leaving out the first epoch when there are several (it pays one-time warm-up)."""
    if not ends:
        return None
    per_epoch = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)]
    return float(statistics.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch))


class Timing(L.Callback):
    """Times training epochs (validation excluded) and counts the cells they saw.

    Beside that wall clock it records the process CPU time at the end of every epoch, so that
    ``cpu_seconds_per_epoch`` is what a whole epoch costs (training, validation, curves and
    checkpoints), the median over epochs 2..N: the figure the speed suite compares across
    implementations (``unitednet_original`` measures the same).
    """

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self.cells = 0
        self._start = 0.0
        self._stopped = True
        self._cpu_start = 0.0
        self._cpu_ends: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._cpu_start, self._cpu_ends = time.process_time(), []

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
        self._cpu_ends.append(time.process_time())
        pl_module.log("time/epoch_seconds", self.epoch_seconds[-1], on_epoch=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # under DDP each process saw its share of the cells: count them all
        if trainer.world_size > 1:
            import torch

            total = trainer.strategy.reduce(torch.tensor(float(self.cells)), reduce_op="sum")
            self.cells = int(total)

    def summary(self) -> dict[str, float | int | None]:
        """``epochs``, ``seconds_per_epoch`` and ``cells_per_second`` (the contracts' cost keys),
        and ``cpu_seconds_per_epoch`` (this process's epochs)."""
        total = sum(self.epoch_seconds)
        n = len(self.epoch_seconds)
        return {
            "epochs": n,
            "seconds_per_epoch": total / n if n else None,
            "cells_per_second": self.cells / total if total > 0 else None,
            "cpu_seconds_per_epoch": median_epoch_seconds(self._cpu_start, self._cpu_ends),
        }
