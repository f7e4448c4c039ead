"""Plots from a results table, and the suite-summary W&B run (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

from mmint.benchmark import plots
from mmint.benchmark.cli import run_benchmark
from mmint.cli import compose_run
from mmint.io import atomic_write

from .conftest import tiny_suite


def _table(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for model, variant in (("m", "default"), ("m", "other"), ("pca", "default")):
        for seed in (0, 1):
            run_dir = f"runs/{model}__d__{variant}__seed{seed}"
            rows.append(
                {
                    "model": model,
                    "data": "d",
                    "seed": seed,
                    "variant": variant,
                    "ari": 0.5 + 0.1 * seed,
                    "r2.a.b": 0.1,
                    "r2.b.a": 0.2,
                    "foscttm": 0.3,
                    "latent_distance": 0.8,
                    "fit_seconds": 2.0,
                    "status": "ok",
                    "error": "",
                    "run_dir": run_dir,
                }
            )
            if model == "m":
                curves = pd.DataFrame(
                    {"epoch": [0, 4, 9], "latent_distance": [1.0, 0.7, 0.5 + seed / 10]}
                )
                atomic_write(tmp_path / run_dir / "curves.csv", curves.to_csv(index=False))
    return pd.DataFrame(rows)


def test_plots_written(tmp_path):
    made = plots.make_plots(_table(tmp_path), tmp_path, umap=False, echo=lambda _: None)
    names = sorted(p.name for p in made)
    assert names == ["bars_d.png", "curves_d.png", "table_d.png", "tradeoff_d.png"]
    for p in made:
        assert p.exists() and p.read_bytes()[:4] == b"\x89PNG"


def test_tradeoff_points_are_the_runs_ari_and_mean_cross_r2(tmp_path):
    table = _table(tmp_path)
    table.loc[5, "status"] = "failed"  # pca seed 1: left out
    table.loc[0, "r2.b.a"] = np.nan  # m seed 0: its cross R2 is r2.a.b alone
    pts = plots.tradeoff_points(table, "d")
    assert list(pts["label"]) == ["m", "m", "m/other", "m/other", "pca"]
    assert list(pts["ari"]) == pytest.approx([0.5, 0.6, 0.5, 0.6, 0.5])
    assert list(pts["r2_cross"]) == pytest.approx([0.1, 0.15, 0.15, 0.15, 0.15])
    one = table[table["variant"] == "default"].assign(model="m")  # a single label: no plot
    assert plots.tradeoff_plot(one, "d", tmp_path / "x.png") is None


def test_umap_panels(tmp_path, monkeypatch):
    """Joint latent by cell type and batch, and stacked per-modality latents by modality
    (the UMAP itself replaced by the first two latent dimensions: numba's JIT takes a minute)."""

    def fake_umap(sc, a, seed):
        a.obsm["X_umap"] = a.obsm["z"][:, :2]

    monkeypatch.setattr(plots, "_umap", fake_umap)
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {"cell_type": list("ab") * 20, "batch": ["x"] * 40}, index=[f"c{i}" for i in range(40)]
    )
    mods = {}
    for m in ("rna", "atac"):
        a = ad.AnnData(X=rng.normal(size=(40, 5)).astype(np.float32), obs=obs.copy())
        a.obsm["X_m"] = rng.normal(size=(40, 4))
        a.obsm["X_m_rna"] = rng.normal(size=(40, 4))
        a.obsm["X_m_atac"] = rng.normal(size=(40, 4))
        mods[m] = a
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    md.MuData(mods).write(run_dir / "outputs.h5mu")
    seen = []
    monkeypatch.setattr(
        plots, "_scatter", lambda ax, xy, values: seen.append((len(xy), values.name))
    )
    path = plots.umap_plot(run_dir, tmp_path / "umap.png", "m", "cell_type", "batch")
    assert path is not None and path.exists()
    assert seen == [(40, "cell_type"), (40, "batch"), (80, "modality")]
    seen.clear()
    plots.umap_plot(run_dir, tmp_path / "umap.png", "m", "cell_type", "batch", max_points=30)
    assert seen == [(30, "cell_type"), (30, "batch"), (30, "modality")]


def test_wandb_suite_summary_offline(tmp_path, monkeypatch, fake_fit):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("CI", "true")
    suite = tiny_suite(seeds=[0], floor=[])
    done = run_benchmark(
        suite,
        tmp_path,
        ["logger=csv"],
        logger_kind="wandb",
        echo=lambda _: None,
        compose=compose_run,
    )
    assert done.counts["ok"] == 1
    assert (tmp_path / "results.csv").exists() and (tmp_path / "report.md").exists()
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb"))
    # the leaderboard as a W&B table: the rows of leaderboard.csv
    (table,) = offline[0].glob("files/media/table/leaderboard_*.table.json")
    logged = json.loads(table.read_text())
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert logged["columns"][:3] == ["model", "mean", "sd"]
    assert [r[0] for r in logged["data"]] == board["model"].tolist() == ["pca"]
    assert logged["data"][0][1] == pytest.approx(board["mean"].iloc[0])


def test_csv_logger_writes_full_report_without_wandb(tmp_path, fake_fit):
    suite = tiny_suite(seeds=[0, 1], floor=[])
    run_benchmark(
        suite, tmp_path, ["logger=csv"], logger_kind="csv", echo=lambda _: None, compose=compose_run
    )
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Benchmark `tiny`") and "## synthetic" in report
    assert (tmp_path / "plots" / "table_synthetic.png").exists()
    assert (tmp_path / "plots" / "bars_synthetic.png").exists()
    assert not (tmp_path / "wandb").exists()
