"""Tiny suites for the benchmark tests: the pca model on 300 simulated cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmint.benchmark.grid import Suite
from mmint.io import write_json

#: every run: tiny synthetic data, no scIB / Leiden (speed), CSV logger
TINY_OVERRIDES = {
    "data.simulate.n_cells": 300,
    "data.simulate.n_types": 4,
    "data.simulate.n_major": 2,
    "data.simulate.n_features": {"rna": 100, "atac": 200, "ephys": 20},
    "eval.scib": False,
    "eval.leiden": False,
}


def tiny_suite(**kw) -> Suite:
    """A pca-only suite on tiny synthetic data (3 seeds unless told)."""
    args = dict(
        name="tiny",
        models=["pca"],
        datasets=["synthetic"],
        seeds=[0, 1, 2],
        overrides=[f"++{k}={v}" for k, v in _formatted().items()],
        umap=False,
    )
    args.update(kw)
    return Suite(**args)


def _formatted() -> dict[str, str]:
    from mmint.benchmark.grid import format_value

    return {k: format_value(v) for k, v in TINY_OVERRIDES.items()}


def fake_metrics(cfg: dict, ari: float = 0.5) -> dict:
    """A small metrics.json for a config (identity, config_hash and a few scores)."""
    from mmint.fit import config_hash

    return {
        "model": cfg["model"]["name"],
        "data": cfg["data"]["name"],
        "seed": cfg["seed"],
        "variant": cfg["variant"],
        "config_hash": config_hash(cfg),
        "ari": ari + 0.01 * cfg["seed"],
        "r2": {"rna": {"rna": 0.9, "atac": 0.1}, "atac": {"rna": 0.2, "atac": 0.8}},
        "foscttm": 0.3,
        "n_groups": 4,
        "fit_seconds": 0.1,
        "versions": {"torch": "x"},
        "scib": None,
    }


@pytest.fixture
def fake_fit(monkeypatch):
    """Replace run_fit by one that writes a metrics.json at once; returns the call log."""
    calls: list[str] = []

    def run_fit(cfg, run_dir):
        calls.append(Path(run_dir).name)
        write_json(Path(run_dir) / "metrics.json", fake_metrics(cfg))
        return {}

    monkeypatch.setattr("mmint.fit.run_fit", run_fit)
    return calls
