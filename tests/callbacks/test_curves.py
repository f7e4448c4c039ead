"""Per-epoch curves and timing callbacks, on a real tiny Lightning fit of a linear integrator."""

from __future__ import annotations

import time
from itertools import combinations

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmint.callbacks import IntegrationMetrics, LatentDistanceCurve, Timing
from mmint.callbacks.curves import CURVE_COLUMNS, curve_correlations
from mmint.callbacks.timing import median_epoch_seconds
from mmint.data import PairedDataModule
from mmint.models.base import IntegratorModule

torch.set_num_threads(1)

EPOCHS = 3
VAL_SLEEP = 0.3  # CPU seconds burnt per validation epoch (to see whether timing counts it)


class LinearIntegrator(IntegratorModule):
    """A linear encoder and decoder per modality; joint latent = mean of the modality latents.

    Manual optimization (as every :class:`IntegratorModule`); logs ``val/loss``.
    """

    name = "linear"

    def __init__(self, spec, latent_dim: int = 4, val_sleep: float = 0.0) -> None:
        super().__init__(spec)
        n = self.spec.n_features
        self.enc = nn.ModuleDict({m: nn.Linear(n[m], latent_dim) for m in self.modalities})
        self.dec = nn.ModuleDict({m: nn.Linear(latent_dim, n[m]) for m in self.modalities})
        self.val_sleep = val_sleep

    def latents(self, batch):
        return {m: self.enc[m](batch[m]) for m in self.modalities}

    def joint_latent(self, batch):
        return torch.stack(list(self.latents(batch).values())).mean(dim=0)

    def translate(self, batch, src, dst):
        return self.dec[dst](self.enc[src](batch[src]))

    def _loss(self, batch):
        z = self.latents(batch)
        recon = sum(F.mse_loss(self.dec[m](z[m]), batch[m]) for m in self.modalities)
        align = sum(F.mse_loss(z[a], z[b]) for a, b in combinations(self.modalities, 2))
        return recon + align

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        loss = self._loss(batch)
        self.manual_backward(loss)
        opt.step()
        self.log("train/loss", loss, batch_size=len(batch["index"]))

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0 and self.val_sleep:
            start = time.process_time()  # busy: the CPU clock must see it too
            while time.process_time() - start < self.val_sleep:
                pass
        self.log("val/loss", self._loss(batch), batch_size=len(batch["index"]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class Probe(L.Callback):
    """Wall-clock marks of the training part of each epoch and of validation."""

    def __init__(self) -> None:
        self.train_start: list[float] = []
        self.last_batch_end: list[float] = []
        self.val_seconds: list[float] = []
        self._val = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self.train_start.append(time.perf_counter())
        self.last_batch_end.append(float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.last_batch_end[-1] = time.perf_counter()

    def on_validation_epoch_start(self, trainer, pl_module):
        self._val = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val_seconds.append(time.perf_counter() - self._val)


@pytest.fixture(scope="module")
def fitted(tiny_data, tmp_path_factory):
    """A 3-epoch fit with IntegrationMetrics(every_n_epochs=1), the curve writer and Timing."""
    L.seed_everything(0, workers=False)
    dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    model = LinearIntegrator(dm.spec, val_sleep=VAL_SLEEP)
    run_dir = tmp_path_factory.mktemp("curves_run")
    metrics = IntegrationMetrics(every_n_epochs=1, max_cells=2000, seed=0)
    timing = Timing()
    probe = Probe()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timing, probe, metrics, LatentDistanceCurve(metrics, run_dir)],
    )
    trainer.fit(model, datamodule=dm)
    return {
        "trainer": trainer,
        "dm": dm,
        "metrics": metrics,
        "timing": timing,
        "probe": probe,
        "run_dir": run_dir,
    }


# ---------------------------------------------------------------------- IntegrationMetrics
def test_history_one_row_per_epoch(fitted):
    history = fitted["metrics"].history
    assert [row["epoch"] for row in history] == list(range(EPOCHS))
    for row in history:
        assert {"latent_distance", "foscttm", "ari", "r2_cross"} <= set(row)
        assert 0.0 <= row["foscttm"] <= 1.0
        assert row["latent_distance"] >= 0.0
        assert -1.0 <= row["ari"] <= 1.0
        assert np.isfinite(row["r2_cross"])


def test_val_metrics_logged(fitted):
    logged = fitted["trainer"].callback_metrics
    for name in ("val/ari", "val/foscttm", "val/latent_distance", "val/r2_cross", "val/loss"):
        assert name in logged, name
    last = fitted["metrics"].history[-1]
    assert float(logged["val/ari"]) == pytest.approx(last["ari"], abs=1e-6)
    assert float(logged["val/foscttm"]) == pytest.approx(last["foscttm"], abs=1e-6)


def test_every_n_epochs_skips(tiny_data):
    """every_n_epochs=5 over 3 epochs: the first and the last epoch only."""
    dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=0, batch_size=128)
    dm.setup()
    metrics = IntegrationMetrics(every_n_epochs=5, seed=0)
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[metrics],
    )
    trainer.fit(LinearIntegrator(dm.spec), datamodule=dm)
    assert [row["epoch"] for row in metrics.history] == [0, 2]  # first and last only


def test_curves_written_on_fit_end(fitted):
    table = pd.read_csv(fitted["run_dir"] / "curves.csv")
    assert list(table.columns[: len(CURVE_COLUMNS)]) == CURVE_COLUMNS
    assert table["epoch"].tolist() == list(range(EPOCHS))
    png = fitted["run_dir"] / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- Timing
def test_timing_summary(fitted):
    timing, dm = fitted["timing"], fitted["dm"]
    summary = timing.summary()
    assert set(summary) == {
        "epochs",
        "seconds_per_epoch",
        "cells_per_second",
        "cpu_seconds_per_epoch",
    }
    assert summary["epochs"] == EPOCHS == len(timing.epoch_seconds)
    n_train = len(dm.train_cells())
    assert n_train % dm.batch_size != 1  # no 1-cell batch dropped
    assert timing.cells == EPOCHS * n_train
    total = sum(timing.epoch_seconds)
    assert summary["cells_per_second"] == pytest.approx(EPOCHS * n_train / total)
    assert summary["seconds_per_epoch"] == pytest.approx(total / EPOCHS)
    assert "time/epoch_seconds" in fitted["trainer"].callback_metrics


def test_timing_summary_empty():
    assert Timing().summary() == {
        "epochs": 0,
        "seconds_per_epoch": None,
        "cells_per_second": None,
        "cpu_seconds_per_epoch": None,
    }


def test_median_epoch_seconds_by_hand():
    # epochs of 5, 2, 3, 1 s: the first (warm-up) is left out, median of 2, 3, 1 = 2
    assert median_epoch_seconds(10.0, [15.0, 17.0, 20.0, 21.0]) == 2.0
    assert median_epoch_seconds(10.0, [15.0, 17.0]) == 2.0
    assert median_epoch_seconds(10.0, [14.0]) == 4.0  # one epoch: itself
    assert median_epoch_seconds(10.0, []) is None


def test_timing_cpu_clock_counts_validation(fitted):
    # the whole epoch's CPU (training + the validation's busy 0.3 s), where the wall clock of
    # the training part leaves validation out
    summary = fitted["timing"].summary()
    assert summary["cpu_seconds_per_epoch"] >= VAL_SLEEP
    assert summary["cpu_seconds_per_epoch"] > summary["seconds_per_epoch"]


def test_timing_excludes_validation(fitted):
    probe, timing = fitted["probe"], fitted["timing"]
    assert len(probe.val_seconds) == EPOCHS
    for i in range(EPOCHS):
        train_only = probe.last_batch_end[i] - probe.train_start[i]
        assert probe.val_seconds[i] >= VAL_SLEEP
        # the training batches alone, plus a little slack: far below the validation sleep
        assert timing.epoch_seconds[i] < train_only + VAL_SLEEP / 3, (
            timing.epoch_seconds[i],
            train_only,
            probe.val_seconds[i],
        )


# ---------------------------------------------------------------------- curve table and plot
def test_curve_correlations_match_numpy():
    rng = np.random.default_rng(0)
    dist = rng.random(6)
    ari = 1 - dist + 0.1 * rng.random(6)
    r2 = rng.random(6)
    table = pd.DataFrame(
        {"epoch": range(6), "latent_distance": dist, "ari": ari, "r2_cross": r2, "foscttm": r2}
    )
    out = curve_correlations(table)
    assert set(out) == {"latent_distance_vs_ari", "latent_distance_vs_r2_cross"}
    assert out["latent_distance_vs_ari"] == pytest.approx(np.corrcoef(dist, ari)[0, 1])
    assert out["latent_distance_vs_r2_cross"] == pytest.approx(np.corrcoef(dist, r2)[0, 1])
    assert out["latent_distance_vs_ari"] < -0.5


def test_curve_correlations_missing_and_degenerate():
    dist = np.array([0.9, 0.7, np.nan, 0.5, 0.4])
    ari = np.array([0.1, 0.3, 0.5, np.nan, 0.8])
    table = pd.DataFrame(
        {"latent_distance": dist, "ari": ari, "r2_cross": [0.2, 0.2, 0.2, 0.2, 0.2]}
    )
    out = curve_correlations(table)
    keep = ~np.isnan(dist) & ~np.isnan(ari)  # rows with both values
    assert out["latent_distance_vs_ari"] == pytest.approx(np.corrcoef(dist[keep], ari[keep])[0, 1])
    assert out["latent_distance_vs_r2_cross"] is None  # constant r2_cross
    short = pd.DataFrame({"latent_distance": [0.9, 0.5], "ari": [0.1, 0.4], "r2_cross": [0, 1]})
    assert curve_correlations(short) == {
        "latent_distance_vs_ari": None,
        "latent_distance_vs_r2_cross": None,
    }


def test_write_curves_csv_and_png(tmp_path):
    metrics = IntegrationMetrics(every_n_epochs=1)
    metrics.history = [
        {"epoch": 0, "r2_cross": 0.1, "ari": 0.2, "foscttm": 0.4, "latent_distance": 0.9, "x": 1},
        {"epoch": 4, "r2_cross": 0.3, "ari": 0.5, "foscttm": 0.3, "latent_distance": 0.6, "x": 2},
        {"epoch": 9, "r2_cross": None, "ari": 0.7, "foscttm": 0.2, "latent_distance": 0.4, "x": 3},
    ]
    curve = LatentDistanceCurve(metrics, tmp_path)
    returned = curve.write()
    table = pd.read_csv(tmp_path / "curves.csv")
    assert list(table.columns) == CURVE_COLUMNS + ["x"]
    assert table["epoch"].tolist() == [0, 4, 9]
    np.testing.assert_allclose(table["latent_distance"], [0.9, 0.6, 0.4])
    assert np.isnan(table["r2_cross"].iloc[2])
    assert list(returned.columns) == CURVE_COLUMNS + ["x"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))
    assert curve.correlations["latent_distance_vs_ari"] == pytest.approx(
        np.corrcoef([0.9, 0.6, 0.4], [0.2, 0.5, 0.7])[0, 1]
    )
    assert curve.correlations["latent_distance_vs_r2_cross"] is None  # 2 rows with r2


def test_write_with_empty_history(tmp_path):
    curve = LatentDistanceCurve(IntegrationMetrics(), tmp_path)
    curve.write()
    table = pd.read_csv(tmp_path / "curves.csv")
    assert list(table.columns) == CURVE_COLUMNS and len(table) == 0
    assert (tmp_path / "curves.png").exists()


def test_model_epoch_values_join_the_curve_rows_by_epoch(tmp_path):
    """A model's ``epoch_values()`` (e.g. learned loss weights) is recorded at every training
    epoch's end and lands in curves.csv beside the scored epochs; the state round-trips."""
    from types import SimpleNamespace

    metrics = IntegrationMetrics(every_n_epochs=2)
    metrics.history = [{"epoch": 0, "ari": 0.2}, {"epoch": 2, "ari": 0.4}]
    model = SimpleNamespace()
    for epoch in range(3):
        trainer = SimpleNamespace(current_epoch=epoch, sanity_checking=False)
        model.epoch_values = lambda e=epoch: {"weight_pgc_translation": 1.0 + e}
        metrics.on_train_epoch_end(trainer, model)
    metrics.on_train_epoch_end(trainer, SimpleNamespace())  # a model without the hook: nothing
    restored = IntegrationMetrics()
    restored.load_state_dict(metrics.state_dict())
    LatentDistanceCurve(restored, tmp_path).write()
    table = pd.read_csv(tmp_path / "curves.csv")
    assert table["epoch"].tolist() == [0, 1, 2]
    assert table["weight_pgc_translation"].tolist() == [1.0, 2.0, 3.0]
    assert table["ari"].iloc[[0, 2]].tolist() == [0.2, 0.4] and np.isnan(table["ari"].iloc[1])
    assert (tmp_path / "curves.png").exists()
