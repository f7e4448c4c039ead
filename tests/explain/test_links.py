"""Scoring relevance against planted links."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmint.explain.links import link_activity, link_ranks, rank_stability, recovery
from mmint.explain.relevance import Groups


def _links() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_modality": ["rna", "atac"],
            "source_feature": ["g1", "p2"],
            "target_modality": ["atac", "rna"],
            "target_feature": ["p0", "g0"],
            "active_types": ["T0;T1", "T2"],
            "strength": [1.5, 1.5],
        }
    )


def _table() -> pd.DataFrame:
    rows = []
    for group, good in (("M0", True), ("M1", False)):
        pairs = (("rna", "atac", "p0", "g1", 20), ("atac", "rna", "g0", "p2", 30))
        for src, dst, target, source, n in pairs:
            rel = np.linspace(1, 0, n)
            names = [f"g{i}" if src == "rna" else f"p{i}" for i in range(n)]
            order = list(names)
            # put the true source at rank 1 in M0 and rank 15 in M1
            order.remove(source)
            order.insert(0 if good else 14, source)
            for r, (name, v) in enumerate(zip(order, rel, strict=True), start=1):
                rows.append((group, src, dst, name, target, v, r))
    return pd.DataFrame(
        rows, columns=["group", "src", "dst", "src_feature", "dst_feature", "relevance", "rank"]
    )


def test_activity_ranks_and_recovery():
    groups = Groups(np.array([0, 0, 0, 1, 1, 1]), ["M0", "M1"], "class")
    types = ["T0", "T1", "T0", "T2", "T2", "T3"]
    act = link_activity(_links(), groups, types)
    assert act.set_index(["link", "group"])["active"].to_dict() == {
        (0, "M0"): True,
        (0, "M1"): False,
        (1, "M0"): False,
        (1, "M1"): True,
    }
    ranks = link_ranks(_table(), _links(), act, {"rna": 20, "atac": 30})
    got = ranks.set_index(["link", "group"])["rank"].to_dict()
    assert got == {(0, "M0"): 1.0, (0, "M1"): 15.0, (1, "M0"): 1.0, (1, "M1"): 15.0}
    rec = recovery(ranks, k=10)
    assert rec["recall@10"] == pytest.approx(0.5)  # link 0 found in its group, link 1 not
    assert rec["precision@10"] == pytest.approx(0.05)
    assert rec["recall@10_chance"] == pytest.approx((10 / 20 + 10 / 30) / 2)
    assert rec["precision@10_chance"] == pytest.approx((1 / 20 + 1 / 30) / 2)
    assert rec["inactive_recall@10"] == pytest.approx(0.5)
    assert rec["median_rank"] == pytest.approx(8.0)


def test_rank_stability():
    a = _table()
    assert rank_stability([a, a])["spearman_mean"] == pytest.approx(1.0)
    b = a.assign(relevance=-a["relevance"])
    out = rank_stability([a, a, b])
    assert out["pairs"] == 3
    assert out["spearman_min"] == pytest.approx(-1.0)
