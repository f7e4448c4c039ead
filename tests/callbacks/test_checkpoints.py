"""When last.ckpt is written (epochs, minutes, overhead budget, end, signal) and what best.ckpt
holds, on a real tiny Lightning fit."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from mmint.callbacks import checkpoints as ck
from mmint.callbacks.checkpoints import LastCheckpoint, best_checkpoint

torch.set_num_threads(1)


class Tiny(L.LightningModule):
    """One linear layer, MSE, Adam; logs ``val/loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(3, 1)

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def loader() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    return torch.utils.data.DataLoader(data, batch_size=8)


class Recorder(L.Callback):
    """Epochs after which last.ckpt changed, and an optional signal sent to this process."""

    def __init__(self, path, signal_at: int | None = None) -> None:
        self.path, self.signal_at, self.written, self._stamp = path, signal_at, [], None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        stamp = self.path.stat().st_mtime_ns if self.path.exists() else None
        if stamp != self._stamp and trainer.current_epoch > 0:
            self.written.append(trainer.current_epoch - 1)
        self._stamp = stamp
        if trainer.current_epoch == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)


def fit(tmp_path, epochs: int, last: LastCheckpoint, signal_at=None, ckpt_path=None):
    rec = Recorder(tmp_path / "last.ckpt", signal_at)
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
        callbacks=[best_checkpoint(tmp_path), last, rec],
    )
    trainer.fit(Tiny(), loader(), loader(), ckpt_path=ckpt_path)
    return trainer, rec


def epoch_of(path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


def test_every_n_epochs_and_the_last_epoch(tmp_path):
    trainer, rec = fit(tmp_path, 7, LastCheckpoint(tmp_path, every_n_epochs=3))
    # epochs 2 and 5 by the rule; the final epoch (6) always (seen at its end, not by rec)
    assert rec.written == [2, 5]
    assert epoch_of(tmp_path / "last.ckpt") == 6
    assert not (tmp_path / "last.ckpt.tmp").exists()


def test_best_holds_weights_without_optimizer_state(tmp_path):
    fit(tmp_path, 3, LastCheckpoint(tmp_path))
    best = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert "optimizer_states" not in best and "state_dict" in best
    assert last["optimizer_states"] and "callbacks" in last
    model = Tiny.load_from_checkpoint(tmp_path / "best.ckpt")
    torch.testing.assert_close(model.net.weight, best["state_dict"]["net.weight"])


def test_signal_finishes_the_epoch_writes_and_stops_then_resumes(tmp_path):
    last = LastCheckpoint(tmp_path, every_n_epochs=100)
    with pytest.raises(SystemExit) as stop:  # Lightning's interrupt path: exit code 1
        fit(tmp_path, 6, last, signal_at=2)
    assert stop.value.code == 1
    assert epoch_of(tmp_path / "last.ckpt") == 2  # the epoch that ran when the signal came
    assert signal.getsignal(signal.SIGTERM) is not last._on_signal  # handlers put back
    trainer, _ = fit(tmp_path, 6, LastCheckpoint(tmp_path), ckpt_path=tmp_path / "last.ckpt")
    assert trainer.current_epoch == 6 and epoch_of(tmp_path / "last.ckpt") == 5


def test_overhead_budget_and_minutes(monkeypatch):
    """Without a rule: write when training time since the last write >= write time / 0.05."""
    now = [0.0]
    monkeypatch.setattr(ck.time, "perf_counter", lambda: now[0])
    trainer = SimpleNamespace(current_epoch=0, max_epochs=100, should_stop=False)
    cb = LastCheckpoint("unused")
    assert cb.due(trainer)  # nothing written yet: the first epoch writes (and is timed)
    cb.writes, cb._since = [2.0], 0.0  # a write took 2 s: at most every 40 s of training
    now[0] = 39.0
    assert not cb.due(trainer)
    now[0] = 40.0
    assert cb.due(trainer)
    trainer.current_epoch = 99  # the last epoch always writes
    now[0] = 0.1
    assert cb.due(trainer)
    timed = LastCheckpoint("unused", every_minutes=1.0)
    timed._since, trainer.current_epoch, now[0] = 0.0, 3, 59.0
    assert not timed.due(trainer)
    now[0] = 60.0
    assert timed.due(trainer)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown trainer.last_checkpoint keys"):
        LastCheckpoint.from_config("x", {"every_n_epoch": 2})
    with pytest.raises(ValueError, match="every_n_epochs"):
        LastCheckpoint("x", every_n_epochs=0)
