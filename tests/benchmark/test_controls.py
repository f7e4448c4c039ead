"""Controls on tiny simulated data: scored by mmint.evaluate, perfect/random by construction,
stored once and reused; scaling them gives 0 and 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmint.benchmark import controls as ctl
from mmint.benchmark.scaled import Scoring, scale_runs
from mmint.cli import compose_run
from mmint.fit import build_datamodule

from .conftest import _formatted


@pytest.fixture(scope="module")
def cfg() -> dict:
    return compose_run(
        ["command=fit", "model=pca", "data=synthetic", "seed=1"]
        + [f"++{k}={v}" for k, v in _formatted().items()]
    )


@pytest.fixture(scope="module")
def scored(cfg) -> tuple[dict, object]:
    dm = build_datamodule(cfg, batch_size=128)
    return ctl.score_controls(dm, 1, cfg["eval"]), dm


def test_controls_by_construction(scored):
    c, dm = scored
    control, random = c["control"], c["random"]
    # the labels as groups, one-hot labels as every latent: perfect grouping and alignment
    assert control["ari"] == control["nmi"] == control["ari_kmeans"] == 1.0
    assert control["foscttm"] == 0.0 and control["latent_distance"] == 0.0
    assert abs(random["ari"]) < 0.05 and abs(random["foscttm"] - 0.5) < 0.1
    assert random["latent_distance"] == pytest.approx(1.0, abs=0.15)
    assert c["split"] == {k: len(v) for k, v in (("n_" + s, dm.split[s]) for s in dm.split)}
    assert c["test_labels"] == dm.true_labels[dm.cells("test")].tolist()


def test_mean_predictor_r2_by_hand(scored):
    c, dm = scored
    test, train = dm.cells("test"), dm.cells("train")
    x = dm.inputs["ephys"]
    x = x.toarray() if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    mu = x[train].mean(axis=0)
    t = x[test]
    sse = ((t - mu) ** 2).sum(axis=0)
    sst = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    keep = sst / len(test) > 1e-8
    expect = 1 - sse[keep].sum() / sst[keep].sum()
    assert c["control"]["r2_variance_weighted.rna.ephys"] == pytest.approx(expect, rel=1e-9)
    # random draws with the training mean and variance: about -(1 + var_train / var_test)
    assert c["random"]["r2_variance_weighted.rna.ephys"] < -0.5


def test_scaled_controls_are_zero_and_one(scored):
    c, _ = scored
    keys = sorted(set(c["random"]) & set(c["control"]))
    runs = pd.DataFrame([c["random"], c["control"]])[keys]
    rnd = pd.DataFrame([c["random"]] * 2)[keys]
    con = pd.DataFrame([c["control"]] * 2)[keys]
    out = scale_runs(runs, rnd, con, Scoring(clip=(-10, 10)))
    scaled = [k for k in out.columns if k.startswith("scaled.")]
    assert len(scaled) >= 8  # grouping, prediction and alignment metrics
    for k in scaled:
        raw = k.removeprefix("scaled.")
        if np.isnan(out.loc[0, k]):  # controls closer than min_gap: not scaled
            assert abs(c["random"][raw] - c["control"][raw]) < Scoring().min_gap
            continue
        # usually the random control is the worse one (0) and the control the better (1)
        assert sorted([out.loc[0, k], out.loc[1, k]]) == [0.0, 1.0]
        if raw in ("ari", "nmi", "foscttm", "latent_distance"):
            assert (out.loc[0, k], out.loc[1, k]) == (0.0, 1.0)


def test_stored_once_and_reused(cfg, tmp_path, monkeypatch):
    calls = []
    real = ctl.score_controls

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(ctl, "score_controls", counting)
    first = ctl.load_or_compute(cfg, tmp_path, echo=lambda _: None)
    assert (tmp_path / "synthetic__seed1.json").exists() and len(calls) == 1
    assert ctl.load_or_compute(cfg, tmp_path, echo=lambda _: None) == first
    assert len(calls) == 1
    other = {**cfg, "split": {**cfg["split"], "kind": "kfold"}}
    assert ctl.file_name(other).startswith("synthetic__kfold-")
    changed = {**cfg, "data": {**cfg["data"], "simulate": {**cfg["data"]["simulate"], "seed": 9}}}
    assert ctl.fingerprint(changed) != ctl.fingerprint(cfg)
    ctl.load_or_compute(changed, tmp_path, echo=lambda _: None)  # same file, new fingerprint
    assert len(calls) == 2
