"""Friedman and post-hoc tests against scipy and scikit-posthocs on the same tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmint.benchmark import significance as sig

sp = pytest.importorskip("scikit_posthocs")


def _table(seed: int = 0, n: int = 8, k: int = 5, ties: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) + np.linspace(0, 1.5, k)
    if ties:
        x = np.round(x, 1)  # ties within blocks and zero differences between models
    return pd.DataFrame(x, columns=[f"m{i}" for i in range(k)])


#: the 3-model, 2-dataset table of test_scaled (overall scores; blocks = datasets)
HAND = pd.DataFrame(
    {"a": [(0.6 + 0.8 + 1.5) / 3, 0.5], "b": [0.4, (0 + 0.75 + 1) / 3], "c": [2.8 / 3, 0.85 / 2.4]},
    index=["d1", "d2"],
)


@pytest.mark.parametrize("table", [HAND, _table(0), _table(1, n=7, k=4), _table(2, ties=False)])
def test_friedman_equals_scipy(table):
    fr = sig.friedman(table)
    ref = stats.friedmanchisquare(*[table[c].to_numpy() for c in table.columns])
    assert fr.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert fr.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert (fr.n_blocks, fr.n_models) == table.shape
    # mean ranks: 1 = the highest value of a block
    manual = table.rank(axis=1, ascending=False).mean(axis=0)
    pd.testing.assert_series_equal(fr.mean_ranks, manual)


@pytest.mark.parametrize(
    "table", [HAND, _table(0), _table(3, n=20, k=6), _table(4, n=12, ties=False)]
)
def test_wilcoxon_holm_equals_scikit_posthocs(table):
    ours = sig.wilcoxon_holm(table)
    ref = sp.posthoc_wilcoxon([table[c].to_numpy() for c in table.columns], p_adjust="holm")
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("table", [HAND, _table(0), _table(5, n=30, k=7)])
def test_nemenyi_equals_scikit_posthocs(table):
    ours = sig.nemenyi(table)
    ref = sp.posthoc_nemenyi_friedman(table.to_numpy())
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=1e-8, atol=1e-12)


def test_holm_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1, running max
    assert sig.holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_nemenyi_critical_difference():
    # Demsar (2006), table 5: q_0.05 for k = 5 is 2.728; CD = q sqrt(k (k + 1) / (6 N))
    assert sig.nemenyi_cd(5, 10) == pytest.approx(2.728 * np.sqrt(30 / 60), abs=2e-3)


def test_cliques():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.5, "d": 3.6})
    p = pd.DataFrame(1.0, index=ranks.index, columns=ranks.index)
    for x, y in [("a", "c"), ("a", "d"), ("b", "d")]:
        p.loc[x, y] = p.loc[y, x] = 0.01
    assert sig.cliques(ranks, p, 0.05) == [["a", "b"], ["b", "c"], ["c", "d"]]
    p.loc["b", "c"] = p.loc["c", "b"] = 0.01
    assert sig.cliques(ranks, p, 0.05) == [["a", "b"], ["c", "d"]]


def test_complete_blocks_drops_the_most_missing_model():
    rows = [
        {"block": f"d{b}", "entry": m, "v": float(b + i)}
        for b in range(4)
        for i, m in enumerate("abcd")
        if not (m == "d" and b > 0) and not (m == "c" and b == 3)
    ]
    out = sig.complete_blocks(pd.DataFrame(rows), "v")
    # d is on 1 block: dropping it keeps 3 complete blocks of a, b, c (9 > 4 x 1)
    assert out.dropped_models == ["d"] and list(out.matrix.columns) == ["a", "b", "c"]
    assert list(out.matrix.index) == ["d0", "d1", "d2"] and out.dropped_blocks == ["d3"]
