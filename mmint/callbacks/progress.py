"""Fit progress over epochs with the time left, in place of Lightning's per-batch bar."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar


def in_ci() -> bool:
    """Whether ``CI`` is set to true (plain output, no progress bars)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def progress_mode(setting: bool | None) -> str:
    """``bar`` (a terminal), ``lines`` (a few plain lines, output not a terminal) or ``off``.

    ``trainer.enable_progress_bar``: ``None`` picks ``bar`` or ``lines`` unless ``CI=true``
    (``off``); ``True`` forces a bar, ``False`` turns progress off.
    """
    if setting is False or (setting is None and in_ci()):
        return "off"
    if setting is True:
        return "bar"
    return "bar" if sys.stderr.isatty() else "lines"


def format_seconds(seconds: float | None) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class FitProgress(ProgressBar):
    """One bar over the epochs of the fit (a resumed fit starts where it was) with
    ``val/loss`` and the estimated time left; ``lines`` prints a line at each quarter instead.
    Only rank 0 shows it."""

    def __init__(self, mode: str = "bar") -> None:
        super().__init__()
        self.mode = mode
        self._enabled = mode != "off"
        self._bar: Any = None
        self._t0 = 0.0
        self._first = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = self.mode != "off"

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.mode != "off"

    def _total(self, trainer: L.Trainer) -> int:
        return int(trainer.max_epochs or 0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.is_enabled and trainer.is_global_zero):
            return
        self._t0, self._first = time.perf_counter(), int(trainer.current_epoch)
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self._total(trainer),
                initial=self._first,
                desc="fit",
                unit="epoch",
                dynamic_ncols=True,
                leave=False,
                file=sys.stderr,
            )

    def _postfix(self, trainer: L.Trainer) -> str:
        loss = trainer.callback_metrics.get("val/loss")
        return f"val/loss {float(loss):.4g}" if loss is not None else ""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.is_enabled and trainer.is_global_zero):
            return
        done, total = int(trainer.current_epoch) + 1, self._total(trainer)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(trainer), refresh=False)
            self._bar.update(1)
            return
        quarter = max(1, total // 4)
        if done % quarter and done != total:
            return
        rate = (time.perf_counter() - self._t0) / max(1, done - self._first)
        print(
            f"epoch {done}/{total}  {self._postfix(trainer)}  "
            f"time left {format_seconds(rate * (total - done))}",
            flush=True,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exc: Any) -> None:
        self.on_train_end(trainer, pl_module)
