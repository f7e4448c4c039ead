"""The fit pipeline on the real configs: run directory and metrics.json per the contracts."""

from __future__ import annotations

import json
import time

import mudata as md
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from mmint.cli import compose
from mmint.fit import config_hash, run_fit

TINY_DATA = [
    "data.simulate.n_cells=300",
    "data.simulate.n_types=4",
    "data.simulate.n_major=2",
    "+data.simulate.n_features={rna: 100, atac: 200, ephys: 20}",
]
IDENTITY = {
    "model",
    "data",
    "seed",
    "variant",
    "config_hash",
    "protocol",
    "scored_on",
    "split",
    "versions",
}
GROUPS = {
    "ari",
    "nmi",
    "ari_kmeans",
    "nmi_kmeans",
    "ari_leiden",
    "nmi_leiden",
    "accuracy_hungarian",
    "n_groups",
    "ari_class",
}
PREDICTION = {"r2", "r2_variance_weighted", "r2_excluded_features", "pearson", "auroc"}
ALIGNMENT = {"foscttm", "latent_distance", "foscttm_pairs", "latent_distance_pairs"}
COST = {
    "fit_seconds",
    "eval_seconds",
    "eval_cpu_seconds",
    "peak_rss_mb",
    "epochs",
    "seconds_per_epoch",
    "cells_per_second",
    "cpu_seconds_per_epoch",
    "world_size",
}
OUTCOME = {"status", "error"}


@pytest.fixture(scope="module")
def pca_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pca_run")
    cfg = compose("fit", ["model=pca", "logger=csv", *TINY_DATA])
    metrics = run_fit(cfg, run_dir)
    return run_dir, metrics, cfg


def test_eval_seconds_time_the_scoring_and_writing_not_the_fit(tmp_path, monkeypatch):
    """A slow evaluation shows in eval_seconds (wall) and eval_cpu_seconds (process CPU), not
    in fit_seconds (which ends with training); both fit in the run's own wall time."""
    import mmint.fit

    real = mmint.fit.evaluate

    def slow_evaluate(*args, **kwargs):
        time.sleep(1.0)  # wall time, no CPU
        busy = time.process_time() + 0.5
        while time.process_time() < busy:  # 0.5 s of CPU
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(mmint.fit, "evaluate", slow_evaluate)
    cfg = compose("fit", ["model=pca", "logger=csv", "eval.scib=false", *TINY_DATA])
    start = time.perf_counter()
    metrics = run_fit(cfg, tmp_path)
    wall = time.perf_counter() - start
    assert metrics["eval_seconds"] >= 1.5
    assert metrics["fit_seconds"] + metrics["eval_seconds"] <= wall
    # CPU seconds count the busy half second and not the sleep
    assert 0.5 <= metrics["eval_cpu_seconds"] <= metrics["eval_seconds"] - 0.9
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["eval_seconds"]
        == (metrics["eval_seconds"])
    )


def test_run_directory_files(pca_run):
    run_dir, _, _ = pca_run
    for name in (
        "config.yaml",
        "split.json",
        "metrics.json",
        "outputs.h5mu",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "predictions/rna_to_atac.h5ad",
        "predictions/atac_to_ephys.h5ad",
    ):
        assert (run_dir / name).exists(), name
    split = json.loads((run_dir / "split.json").read_text())
    sets = [set(split[s]) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(len(s) for s in sets) == 300


def test_metrics_keys_follow_contract(pca_run):
    _, metrics, _ = pca_run
    missing = (IDENTITY | GROUPS | PREDICTION | ALIGNMENT | COST | OUTCOME | {"scib"}) - set(
        metrics
    )
    assert not missing
    assert metrics["status"] == "ok" and metrics["error"] is None and metrics["warnings"] == []
    assert metrics["world_size"] == 1
    assert metrics["scored_on"] == "test"
    assert metrics["epochs"] is None and metrics["seconds_per_epoch"] is None
    assert set(metrics["r2"]) == {"rna", "atac", "ephys"}
    assert set(metrics["auroc"]["rna"]) == {"atac"}  # binary targets only
    pairs = metrics["foscttm_pairs"]
    assert pairs and all(a < b for a in pairs for b in pairs[a])  # a < b by name
    for name in (
        "bio_conservation",
        "batch_correction",
        "total",
        "metrics",
        "modality_mixing",
        "protocol",
    ):
        assert name in metrics["scib"]
    # eval.scib_max_cells (20,000) is above the test cells: every one is scored, and said so
    n_test = metrics["split"]["n_test"]
    assert metrics["scib"]["subsample"] == {
        "n_cells": n_test,
        "n_cells_total": n_test,
        "max_cells": 20000,
        "how": "all scored cells (not more than max_cells)",
        "seed": None,
    }
    # no metric can explode because of a degenerate feature
    for row in metrics["r2"].values():
        assert all(v > -1e3 for v in row.values())


def test_scores_match_an_independent_computation(pca_run):
    """ari_kmeans recomputed with sklearn from the written outputs' test cells."""
    run_dir, metrics, _ = pca_run
    mdata = md.read_h5mu(run_dir / "outputs.h5mu")
    rna = mdata.mod["rna"]
    test = (rna.obs["split"] == "test").to_numpy()
    z = rna.obsm["X_pca"][test]
    labels = rna.obs["cell_type"].to_numpy()[test]
    pred = KMeans(n_clusters=len(set(labels)), n_init=10, random_state=0).fit_predict(z)
    assert metrics["ari_kmeans"] == pytest.approx(adjusted_rand_score(labels, pred), abs=1e-9)
    assert metrics["split"]["n_test"] == int(test.sum())


def test_config_hash_ignores_logger_but_not_seed(pca_run):
    _, metrics, cfg = pca_run
    assert metrics["config_hash"] == config_hash(
        compose("fit", ["model=pca", "logger=none", *TINY_DATA])
    )
    assert metrics["config_hash"] != config_hash(
        compose("fit", ["model=pca", "seed=1", *TINY_DATA])
    )


def test_same_seed_same_metrics(pca_run, tmp_path):
    _, metrics, cfg = pca_run
    again = run_fit(cfg, tmp_path)
    for key in ("ari", "ari_kmeans", "foscttm", "latent_distance"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-12)
    np.testing.assert_allclose(again["r2"]["rna"]["ephys"], metrics["r2"]["rna"]["ephys"])


def test_early_stopping_ends_a_fit_whose_val_loss_stops_improving(tmp_path):
    """lr 0: val/loss never improves after the first epoch, so patience 2 stops after 3 of 20."""
    overrides = ["model=unitednet", "logger=csv", *TINY_DATA, "model.max_epochs=20"]
    overrides += ["eval.scib=false", "eval.leiden=false"]  # the stop is the point, not scores
    stopped = compose("fit", [*overrides, "model.lr=0.0", "trainer.early_stopping_patience=2"])
    info = run_fit(stopped, tmp_path / "stopped")
    assert info["status"] == "ok"
    assert info["epochs"] == 3
    # early stopping takes part in the reuse key: the same fit without it is another run
    assert config_hash(stopped) != config_hash(compose("fit", [*overrides, "model.lr=0.0"]))
