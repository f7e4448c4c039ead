"""A diverging fit stops at once with one line, is marked failed, and a suite goes on;
a collapsed but finite fit is flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchmark.conftest import tiny_suite

from mmint.benchmark.report import ReportOptions, build_report, flagged_rows
from mmint.benchmark.results import read_results
from mmint.benchmark.runner import run_suite
from mmint.callbacks.divergence import TrainingDiverged
from mmint.cli import compose, compose_run
from mmint.fit import R2_FLAG, result_warnings, run_fit

from .helpers import TINY, mmint

SCORES = ("ari", "nmi", "ari_kmeans", "r2", "foscttm", "latent_distance", "scib", "pearson")


@pytest.mark.parametrize("model", ["multivi", "cvqvae", "unitednet"])
def test_non_finite_loss_stops_at_once(model, tmp_path):
    cfg = compose("fit", [f"model={model}", *TINY, "model.max_epochs=3", "model.lr=1e6"])
    with pytest.raises(TrainingDiverged) as info:
        run_fit(cfg, tmp_path)
    err = info.value
    line = str(err)
    assert "\n" not in line
    assert f"training diverged: {model}" in line
    # what went first: a loss term, or (when the loss stays finite one step longer, as for
    # cvqvae at lr 1e6) the parameters it names
    assert "train/" in line or "parameters (" in line
    assert err.where.startswith("epoch 0, step ")  # within the first epoch: at once
    assert "model.lr=1e+06" in err.fix and "input scale" in err.fix
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"] == line
    assert metrics["model"] == model and metrics["config_hash"]
    assert not set(SCORES) & set(metrics)  # no scores, NaN or otherwise
    assert not (tmp_path / "outputs.h5mu").exists()


def test_cli_prints_one_error_line(tmp_path):
    out = mmint(
        "fit",
        "model=multivi",
        *TINY,
        "model.max_epochs=2",
        "model.lr=1e6",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    errors = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: training diverged: multivi")
    assert "Traceback" not in out.stdout + out.stderr
    assert json.loads((tmp_path / "run/metrics.json").read_text())["status"] == "failed"


def test_suite_records_the_divergence_and_goes_on(tmp_path):
    suite = tiny_suite(
        models=["multivi"],
        seeds=[0],
        floor=["pca"],
        variants={"diverge": ["model.lr=1e6"]},
        model_overrides={"multivi": ["model.max_epochs=2"]},
    )
    done = run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    assert done.counts == {"ok": 1, "failed": 1, "cached": 0}
    table = read_results(tmp_path / "results.csv").set_index("model")
    assert table.loc["pca", "status"] == "ok"
    assert table.loc["multivi", "status"] == "failed"
    assert "training diverged: multivi" in table.loc["multivi", "error"]
    assert np.isnan(table.loc["multivi", "ari"])  # no score for the failed run
    report = build_report(table.reset_index(), ReportOptions(name="t"))
    assert "## Failed runs" in report and "training diverged" in report


def test_collapse_is_flagged(tiny_dm):
    fine = {"n_groups": 4, "r2": {"rna": {"rna": 0.5, "atac": -0.2}}}
    assert result_warnings(fine, tiny_dm) == []
    collapsed = {"n_groups": 1, "r2": {"rna": {"rna": -3.5e7, "atac": R2_FLAG - 1}}}
    warnings = result_warnings(collapsed, tiny_dm)
    assert len(warnings) == 2
    assert warnings[0].startswith("collapse: the model put every cell in 1 group (4 labels)")
    assert "2 of the r2 entries" in warnings[1] and "rna->rna: -3.5e+07" in warnings[1]


def test_report_lists_flagged_runs():
    rows = [
        {
            "model": "m",
            "data": "d",
            "seed": s,
            "variant": "v",
            "ari": 0.5,
            "status": "ok",
            "error": "",
            "run_dir": f"r{s}",
            "warnings": w,
        }
        for s, w in ((0, ""), (1, "collapse: the model put every cell in 1 group (4 labels)"))
    ]
    import pandas as pd

    table = pd.DataFrame(rows)
    assert list(flagged_rows(table)["seed"]) == [1]
    report = build_report(table, ReportOptions(name="t"))
    assert "Runs: 2 ok (1 flagged, see Flagged runs), 0 failed" in report
    assert "## Flagged runs" in report and "m__d__v__seed1 | collapse" in report


class _Poisoned:
    """A tiny LightningModule whose unused parameter turns NaN in step ``at`` while its loss
    stays finite; its validation records whether it ever saw a NaN parameter."""

    @staticmethod
    def make(at: int):
        import lightning as L
        import torch

        class Module(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.w = torch.nn.Parameter(torch.ones(3))
                self.unused = torch.nn.Parameter(torch.ones(2))
                self.validated_nan = False

            def training_step(self, batch, batch_idx):
                if self.global_step == at:  # step `at` leaves it NaN
                    with torch.no_grad():
                        self.unused[0] = float("nan")
                loss = (self.w * batch[0]).pow(2).mean()
                self.log("train/loss", loss)
                return loss

            def validation_step(self, batch, batch_idx):
                self.validated_nan |= not bool(torch.isfinite(self.unused).all())

            def configure_optimizers(self):
                return torch.optim.SGD([self.w], lr=0.01)

        return Module()


@pytest.mark.parametrize(("at", "caught"), [(3, 3), (13, 20), (25, 27)])
def test_parameter_scans_catch_a_nan_by_the_next_scan_and_before_validation(at, caught):
    """Parameters are scanned after each of the first 10 steps, every 10th step and each
    epoch's last batch (28 batches here): a NaN appearing after step 13 is reported at step
    20, one after step 25 at step 27, before validation sees it."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from mmint.callbacks.divergence import DivergenceCheck

    data = DataLoader(TensorDataset(torch.randn(28, 3)), batch_size=1)
    module = _Poisoned.make(at)
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[DivergenceCheck("toy")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(module, data, data)
    assert info.value.where == f"epoch 0, step {caught}"
    assert "parameters (unused, ...) became non-finite" in str(info.value)
    assert ("after step" in str(info.value)) == (caught > at + 1)
    assert not module.validated_nan
