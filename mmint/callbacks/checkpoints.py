"""When a fit writes its checkpoints.

``last.ckpt`` (everything a resume needs: weights, optimizers, loops, callbacks, random state)
is written at the end of an epoch when one of these holds:

- the fit's last epoch (or the trainer stops early);
- a signal asked the fit to stop (``SIGTERM``, ``SIGINT``, ``SIGUSR1``): the epoch that runs is
  finished, ``last.ckpt`` written, and the process ends (exit code 1, no scores; rerunning
  the same command resumes); a second signal goes to the handler that was there before
  (Lightning's for SIGTERM: stop after the running batch, no checkpoint; SIGINT: stop now);
- ``every_n_epochs`` epochs since the last write, or ``every_minutes`` minutes (either, when set);
- neither set: as soon as the training time since the last write is at least the last write's
  time divided by ``max_overhead``, so that writing costs at most that fraction of the fit
  (5 % by default; a cheap checkpoint is written every epoch, a large one every few).

The file is written beside and renamed over the old one: a kill during the write leaves the
previous ``last.ckpt`` intact. ``best.ckpt`` (:func:`best_checkpoint`) holds what inference
needs: weights, hyper-parameters and the fitted transforms, no optimizer state.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

#: the settings' defaults (``trainer.last_checkpoint`` in the config)
DEFAULTS = {"every_n_epochs": None, "every_minutes": None, "max_overhead": 0.05}
SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")


def best_checkpoint(dirpath: Path) -> L.Callback:
    """``best.ckpt``: the weights (and hyper-parameters, transforms) of the epoch with the
    lowest ``val/loss``; no optimizer state (resuming reads ``last.ckpt``)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=dirpath,
        filename="best",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )


class LastCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` by the rules of the module docstring.

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so that Lightning runs its epoch-end
    hook after every other callback's and the model's (the file holds the whole epoch).

    Parameters
    ----------
    dirpath
        The run's checkpoint folder.
    every_n_epochs
        Write every this many epochs (``None``: not by epochs).
    every_minutes
        Write when this many minutes passed since the last write (``None``: not by time).
    max_overhead
        Without either: the largest fraction of the training time spent writing.
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_epochs: int | None = None,
        every_minutes: float | None = None,
        max_overhead: float = 0.05,
    ) -> None:
        if every_n_epochs is not None and int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be 1 or more, got {every_n_epochs}")
        if not 0 < float(max_overhead) <= 1:
            raise ValueError(f"max_overhead must be in (0, 1], got {max_overhead}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_epochs = None if every_n_epochs is None else int(every_n_epochs)
        self.every_minutes = None if every_minutes is None else float(every_minutes)
        self.max_overhead = float(max_overhead)
        self.signalled: int | None = None
        self.writes: list[float] = []  # seconds each write took
        self._since = time.perf_counter()  # training time since the last write starts here
        self._epochs_since = 0
        self._old_handlers: dict[int, Any] = {}

    @classmethod
    def from_config(cls, dirpath: str | Path, settings: Mapping[str, Any] | None) -> LastCheckpoint:
        """From ``trainer.last_checkpoint`` (missing keys: :data:`DEFAULTS`)."""
        unknown = set(settings or {}) - set(DEFAULTS)
        if unknown:
            raise ValueError(
                f"unknown trainer.last_checkpoint keys {sorted(unknown)}; use {sorted(DEFAULTS)}"
            )
        return cls(dirpath, **{**DEFAULTS, **dict(settings or {})})

    # ------------------------------------------------------------------- signals
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = time.perf_counter()
        for name in SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave the handlers as they are
                return

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exc) -> None:
        self._restore_handlers()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = signum
        self._restore_handlers()  # a second signal: the previous handler's behaviour
        print(
            f"signal {signal.Signals(signum).name}: finishing this epoch, writing last.ckpt, "
            "then stopping (rerun the same command to resume; signal again to stop sooner)",
            flush=True,
        )

    def _restore_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    # -------------------------------------------------------------------- writing
    def due(self, trainer: L.Trainer) -> bool:
        """Whether the epoch that just ended should write ``last.ckpt``."""
        self._epochs_since += 1
        last_epoch = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if last_epoch or trainer.should_stop or self.signalled is not None:
            return True
        elapsed = time.perf_counter() - self._since
        if self.every_n_epochs is not None or self.every_minutes is not None:
            by_epochs = self.every_n_epochs is not None and (
                self._epochs_since >= self.every_n_epochs
            )
            by_time = self.every_minutes is not None and elapsed >= 60 * self.every_minutes
            return by_epochs or by_time
        if not self.writes:
            return True
        return elapsed * self.max_overhead >= self.writes[-1]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.due(trainer):
            return
        self.write(trainer)
        if self.signalled is not None:
            # Lightning's interrupt path: teardown, then the process exits (code 1)
            raise KeyboardInterrupt(f"stopped by {signal.Signals(self.signalled).name}")

    def write(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` through a temporary file (rank 0 renames it)."""
        start = time.perf_counter()
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # resumable: optimizer state too
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("last_checkpoint")
        self.writes.append(time.perf_counter() - start)
        self._since = time.perf_counter()
        self._epochs_since = 0

    def state_dict(self) -> dict[str, Any]:
        return {"writes": list(self.writes)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.writes = list(state_dict.get("writes", []))
