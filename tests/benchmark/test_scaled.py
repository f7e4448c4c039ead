"""Scaled scores and the leaderboard against a hand computation (3 models, 2 datasets)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmint.benchmark.leaderboard import leaderboard, score_runs
from mmint.benchmark.scaled import Scoring, metric_category, scale, scale_runs

R2 = "r2_variance_weighted.rna.adt"


def _run(model, data, ari, fos, r2, seed=0, status="ok"):
    return {
        "model": model,
        "data": data,
        "seed": seed,
        "variant": "default",
        "ari": ari,
        "foscttm": fos,
        R2: r2,
        "r2.rna.adt": 99.0,  # the uniform R2 is not a scaled metric (variance-weighted is)
        "status": status,
    }


#: random / label-or-mean controls of each dataset (seed 0)
CONTROLS = {
    ("d1", "default", 0): {
        "random": {"ari": 0.0, "foscttm": 0.5, R2: -1.0},
        "control": {"ari": 1.0, "foscttm": 0.0, R2: 0.0},
    },
    ("d2", "default", 0): {
        "random": {"ari": 0.1, "foscttm": 0.4, R2: -2.0},
        "control": {"ari": 0.9, "foscttm": 0.0, R2: 0.0},
    },
}


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _run("a", "d1", 0.6, 0.1, 0.5),
            _run("b", "d1", 0.3, 0.3, -0.5),
            _run("c", "d1", 0.9, np.nan, 0.9),  # c has no alignment (n/a)
            _run("a", "d2", 0.5, 0.2, -1.0),
            _run("b", "d2", 0.05, 0.1, 0.0),
            _run("c", "d2", 0.95, np.nan, -3.0),
        ]
    )


def test_scaled_scores_by_hand(table):
    runs = score_runs(table, CONTROLS, Scoring()).runs.set_index(["model", "data"])
    # (score - random) / (control - random); FOSCTTM: lower is better, so control 0 < random
    hand = {
        ("a", "d1"): (0.6, (0.5 - 0.1) / 0.5, (0.5 + 1) / 1),
        ("b", "d1"): (0.3, (0.5 - 0.3) / 0.5, (-0.5 + 1) / 1),
        ("c", "d1"): (0.9, np.nan, (0.9 + 1) / 1),
        ("a", "d2"): ((0.5 - 0.1) / 0.8, (0.4 - 0.2) / 0.4, (-1 + 2) / 2),
        ("b", "d2"): (0.0, (0.4 - 0.1) / 0.4, (0 + 2) / 2),  # ARI below random: clipped to 0
        ("c", "d2"): ((0.95 - 0.1) / 0.8, np.nan, 0.0),  # R2 far below random: clipped to 0
    }
    for key, (ari, fos, r2) in hand.items():
        r = runs.loc[key]
        assert r["scaled.ari"] == pytest.approx(ari)
        assert r["scaled.foscttm"] == pytest.approx(fos, nan_ok=True)
        assert r[f"scaled.{R2}"] == pytest.approx(r2)
        assert r["category.grouping"] == pytest.approx(ari)
        assert r["category.prediction"] == pytest.approx(r2)
        assert r["category.alignment"] == pytest.approx(fos, nan_ok=True)
        # overall: grouping, prediction, alignment equally (no scIB here); c's missing
        # alignment counts as 0 because a and b have it
        assert r["overall"] == pytest.approx((ari + r2 + (0.0 if np.isnan(fos) else fos)) / 3)
        assert r["n_categories"] == 3
    assert runs.loc[("c", "d1"), "missing_categories"] == "alignment"
    assert "scaled.r2.rna.adt" not in runs  # the raw column stays, unscaled
    assert runs.loc[("a", "d1"), "ari"] == 0.6

    board = leaderboard(score_runs(table, CONTROLS, Scoring()).runs)
    o = {k: (v[0] + v[2] + (0.0 if np.isnan(v[1]) else v[1])) / 3 for k, v in hand.items()}
    assert list(board.index) == ["a", "c", "b"]  # by mean overall
    for m in "abc":
        assert board.loc[m, "mean"] == pytest.approx((o[(m, "d1")] + o[(m, "d2")]) / 2)
        assert board.loc[m, "sd"] == pytest.approx(abs(o[(m, "d1")] - o[(m, "d2")]) / np.sqrt(2))
        assert board.loc[m, "n_tasks"] == 2
    # d1: a 0.967 > c 0.933 > b 0.4; d2: b 0.583 > a 0.5 > c 0.354
    assert board["rank.d1"].to_dict() == {"a": 1.0, "c": 2.0, "b": 3.0}
    assert board["rank.d2"].to_dict() == {"a": 2.0, "c": 3.0, "b": 1.0}
    assert board["mean_rank"].to_dict() == {"a": 1.5, "c": 2.5, "b": 2.0}


def test_skip_rule_and_weights(table):
    runs = score_runs(table, CONTROLS, Scoring(missing="skip")).runs.set_index(["model", "data"])
    assert runs.loc[("c", "d1"), "overall"] == pytest.approx((0.9 + 1.9) / 2)
    assert runs.loc[("c", "d1"), "n_categories"] == 2
    w = Scoring(weights={"grouping": 2, "prediction": 1, "alignment": 0, "integration": 1})
    runs = score_runs(table, CONTROLS, w).runs.set_index(["model", "data"])
    assert runs.loc[("a", "d1"), "overall"] == pytest.approx((2 * 0.6 + 1.5) / 3)


def test_missing_model_is_marked(table):
    rows = pd.concat(
        [
            table,
            pd.DataFrame(
                [_run("d", "d1", 0.7, 0.2, 0.0), _run("e", "d2", 0, 0, 0, status="failed")]
            ),
        ]
    )
    scored = score_runs(rows.reset_index(drop=True), CONTROLS, Scoring())
    board = leaderboard(scored.runs, scored.all_runs)
    assert board.loc["d", "n_tasks"] == 1 and board.loc["d", "status.d2"] == "not run"
    assert np.isnan(board.loc["d", "score.d2"]) and board.loc["d", "rank.d1"] == 3.0
    assert board.loc["e", "status.d2"] == "failed" and np.isnan(board.loc["e", "mean"])


def test_controls_give_zero_and_one():
    for higher, (r, c) in [(True, (0.1, 0.9)), (False, (0.5, 0.0)), (True, (0.9, 0.6))]:
        got = scale([r, c, (r + c) / 2], r, c, higher_is_better=higher, clip=(-5, 5))
        better, worse = (c, r) if (c > r) == higher else (r, c)
        assert scale(worse, r, c, higher, (-5, 5)) == 0.0
        assert scale(better, r, c, higher, (-5, 5)) == 1.0
        assert got[2] == pytest.approx(0.5)
    assert np.isnan(scale(0.5, 0.5, 0.505, min_gap=0.01))  # controls too close: not scaled
    assert scale(3.0, 0.0, 1.0, clip=(0.0, 2.0)) == 2.0


def test_metric_categories():
    assert metric_category("ari_kmeans") == "grouping"
    assert metric_category("scib.metrics.ilisi_knn") == "batch_correction"
    assert metric_category("scib.metrics.clisi_knn") == "bio_conservation"
    assert metric_category("auroc.rna.atac") == "prediction"
    assert metric_category("pearson.rna.rna") is None  # reconstruction is not prediction
    assert metric_category("latent_distance") == "alignment"
    assert metric_category("fit_seconds") is None


def test_integration_is_bio_and_batch():
    cols = {"scib.metrics.silhouette_label": 0.7, "scib.metrics.ilisi_knn": 0.2}
    t = pd.DataFrame([cols, {"scib.metrics.silhouette_label": 0.7}])
    rnd = pd.DataFrame([{k: 0.0 for k in cols}] * 2)
    ctl = pd.DataFrame([{k: 1.0 for k in cols}] * 2)
    out = scale_runs(t, rnd, ctl, Scoring())
    assert out.loc[0, "category.integration"] == pytest.approx(0.6 * 0.7 + 0.4 * 0.2)
    assert out.loc[1, "category.integration"] == pytest.approx(0.7)  # one batch: bio alone
