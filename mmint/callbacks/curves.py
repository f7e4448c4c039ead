"""Per-epoch validation metrics and the latent-distance curves they make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd

from mmint.evaluate import quick_scores
from mmint.io import atomic_write, save_figure

CURVE_COLUMNS = ["epoch", "latent_distance", "foscttm", "ari", "r2_cross"]


class IntegrationMetrics(L.Callback):
    """Every ``every_n_epochs`` epochs: ARI, FOSCTTM, latent distance and mean cross-modal R2
    on (at most ``max_cells``) validation cells, logged to every logger as ``val/<name>``.

    The final, complete scores on test cells (scIB included) are computed by the fit pipeline
    on the selected checkpoint through the same :mod:`mmint.evaluate` code.

    A model with an ``epoch_values() -> {name: float}`` method (e.g. the effective loss weights
    of a learned loss balancing) has them recorded at the end of every training epoch, before
    the model's own end-of-epoch hook: they join the curve rows by epoch.
    """

    def __init__(self, every_n_epochs: int = 5, max_cells: int = 2000, seed: int = 0) -> None:
        self.every_n_epochs = max(1, every_n_epochs)
        self.max_cells = max_cells
        self.seed = seed
        self.history: list[dict[str, Any]] = []
        #: per epoch, the model's ``epoch_values()``
        self.epoch_values: dict[int, dict[str, float]] = {}

    def state_dict(self) -> dict[str, Any]:
        """The curve rows so far (kept in checkpoints: a resumed fit keeps its early epochs)."""
        return {
            "history": [dict(row) for row in self.history],
            "epoch_values": {int(e): dict(v) for e, v in self.epoch_values.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict.get("history", [])]
        saved = state_dict.get("epoch_values", {})
        self.epoch_values = {int(e): dict(v) for e, v in saved.items()}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = getattr(pl_module, "epoch_values", None)
        if callable(values) and not trainer.sanity_checking:
            record = {k: float(v) for k, v in values().items()}
            if record:
                self.epoch_values[trainer.current_epoch] = record

    def rows(self) -> list[dict[str, Any]]:
        """The curve rows: the scored epochs' and, joined by epoch, the model's values."""
        by_epoch = {int(row["epoch"]): dict(row) for row in self.history}
        for epoch, values in self.epoch_values.items():
            by_epoch.setdefault(epoch, {"epoch": epoch}).update(values)
        return [by_epoch[e] for e in sorted(by_epoch)]

    def _cells(self, trainer: L.Trainer) -> np.ndarray:
        val = trainer.datamodule.cells("val")
        if len(val) > self.max_cells:
            val = np.sort(
                np.random.default_rng(self.seed).choice(val, self.max_cells, replace=False)
            )
        return val

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 >= (trainer.max_epochs or 0)
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero  # under DDP the scores are computed once, on rank 0
            or not ((epoch + 1) % self.every_n_epochs == 0 or epoch == 0 or last)
        ):
            return
        scores = quick_scores(pl_module, trainer.datamodule, self._cells(trainer), seed=self.seed)
        row = {"epoch": epoch, **scores}
        for name, value in scores.items():
            if value is not None:
                pl_module.log(f"val/{name}", float(value), on_epoch=True)
        if not self.history or self.history[-1]["epoch"] != epoch:
            self.history.append(row)


class LatentDistanceCurve(L.Callback):
    """Writes ``curves.csv`` and ``curves.png`` from :class:`IntegrationMetrics`' history, with
    the correlation across epochs of latent distance with ARI and with R2 (the UnitedNet
    paper's claim that the tasks help each other through alignment)."""

    def __init__(self, metrics: IntegrationMetrics, run_dir: str | Path) -> None:
        self.metrics = metrics
        self.run_dir = Path(run_dir)
        self.correlations: dict[str, float | None] = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.write()

    def write(self) -> pd.DataFrame:
        """Write the CSV and PNG; return the table."""
        table = pd.DataFrame(self.metrics.rows())
        for col in CURVE_COLUMNS:
            if col not in table:
                table[col] = np.nan
        table = table[CURVE_COLUMNS + [c for c in table.columns if c not in CURVE_COLUMNS]]
        atomic_write(self.run_dir / "curves.csv", table.to_csv(index=False))
        self.correlations = curve_correlations(table)
        plot_curves(table, self.run_dir / "curves.png", self.correlations)
        return table


def curve_correlations(table: pd.DataFrame) -> dict[str, float | None]:
    """Pearson correlation across epochs of latent distance with ARI and with cross-modal R2."""
    out: dict[str, float | None] = {}
    for other in ("ari", "r2_cross"):
        pair = table[["latent_distance", other]].astype(float).dropna()
        ok = len(pair) >= 3 and pair.std().min() > 0
        out[f"latent_distance_vs_{other}"] = float(pair.corr().iloc[0, 1]) if ok else None
    return out


def plot_curves(table: pd.DataFrame, path: Path, correlations: dict[str, float | None]) -> None:
    """One panel per curve column against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in CURVE_COLUMNS[1:] if table[c].notna().any()] or CURVE_COLUMNS[1:2]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 2.8), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        scored = table[["epoch", col]].astype(float).dropna()  # epochs with this score
        ax.plot(scored["epoch"], scored[col], marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_title(col)
    text = ", ".join(f"{k}: {v:.2f}" for k, v in correlations.items() if v is not None)
    if text:
        fig.suptitle(f"corr({text})", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100, bbox_inches=None)
