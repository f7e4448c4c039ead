"""SHAP relevance: feature-to-group and feature-to-feature, as tidy tables.

The explainer is shap's ``DeepExplainer`` when every leaf module of the sub-network is one it
handles and its explanations add up (``sum(SHAP) + expected value == output`` within
``tol`` on a probe of a few cells, then on all cells), else ``GradientExplainer`` (expected
gradients); which one was used is recorded per sub-network. Importance of an input feature =
mean ``|SHAP|`` over the explained cells (as the UnitedNet reference).

- :func:`group_relevance`: for each model group ``g``, which input features of each modality
  drive the group probability ``p_g`` on the cells assigned to ``g``. Background: group
  prototypes (per-group mean inputs of training cells, the reference's choice), sampled
  training cells, or training cells of the group.
- :func:`feature_relevance`: within a group, for ``src -> dst`` translation, which ``src``
  features drive each (explained) ``dst`` feature, on the cells of that group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mmint.errors import InputError
from mmint.explain.groups import (
    Groups,
    dense_rows,
    explain_cells,
    feature_names,
    group_composition,
    make_groups,
    model_groups,
    observed,
    sample_cells,
)
from mmint.explain.shap_engine import EXPLAINERS, ShapResult, deep_supported, shap_values
from mmint.explain.subnets import Columns, group_network, translator

BACKGROUNDS = ("prototypes", "train", "group")
GROUP_COLUMNS = ["group", "modality", "feature", "relevance", "rank"]
FEATURE_COLUMNS = ["group", "src", "dst", "src_feature", "dst_feature", "relevance", "rank"]
RECORD_COLUMNS = [
    "table",
    "group",
    "src",
    "dst",
    "explainer",
    "reason",
    "n_cells",
    "n_background",
    "n_outputs",
    "additivity_error",
]
__all__ = [
    "BACKGROUNDS",
    "EXPLAINERS",
    "FEATURE_COLUMNS",
    "GROUP_COLUMNS",
    "RECORD_COLUMNS",
    "Groups",
    "ShapResult",
    "deep_supported",
    "dense_rows",
    "explain_cells",
    "feature_names",
    "feature_relevance",
    "group_composition",
    "group_relevance",
    "make_groups",
    "model_groups",
    "observed",
    "shap_values",
]


def _background(
    kind: str,
    rows: Any,
    groups: Groups,
    dm: Any,
    modalities: Sequence[str],
    group: str | None,
    n_background: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Background inputs (``rows(idx)`` gives model inputs) from training cells."""
    if kind not in BACKGROUNDS:
        raise InputError(f"unknown background '{kind}'", "explain", f"use one of {BACKGROUNDS}")
    train = observed(dm, modalities, dm.cells("train"))
    if kind == "prototypes":
        protos = []
        for gi in range(len(groups.names)):
            members = train[groups.codes[train] == gi]
            if len(members):
                protos.append(rows(members).mean(axis=0))
        if len(protos) >= 2:
            return np.stack(protos).astype(np.float32)
        kind = "train"  # a single group: its mean would be a one-row background
    if kind == "group" and group is not None:
        members = train[groups.codes[train] == groups.names.index(group)]
        if len(members) >= 2:
            return rows(sample_cells(members, n_background, rng))
    return rows(sample_cells(train, n_background, rng))


def _rank(values: np.ndarray) -> np.ndarray:
    """Rank 1 = largest value (ties share the lowest rank)."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(values), method="min").astype(np.int64)


# ------------------------------------------------------------------------ group relevance
def group_relevance(
    model: Any,
    dm: Any,
    groups: Groups | None = None,
    *,
    cells: str = "all",
    n_explain: int | None = 100,
    background: str = "prototypes",
    n_background: int = 100,
    explainer: str = "auto",
    nsamples: int = 200,
    batch_size: int | None = None,
    min_cells: int = 5,
    only_groups: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Feature-to-group relevance of a model with a group head (UnitedNet).

    For each model group ``g`` with at least ``min_cells`` cells (among ``cells``, with every
    modality), SHAP values of ``p_g`` for up to ``n_explain`` sampled cells of ``g``.

    Returns
    -------
    table
        ``group, modality, feature, relevance, rank`` (rank 1 = most relevant within the
        group and modality).
    records
        One dict per explained group (``RECORD_COLUMNS``): explainer used, sizes, additivity.
    """
    net = group_network(model)
    if net is None:
        raise InputError(
            f"model '{model.name}' has no group head", "explain", "group relevance needs UnitedNet"
        )
    groups = groups if groups is not None else make_groups(model, dm, "model")
    if groups.source != "model":
        raise InputError(
            "group relevance explains the model's own groups",
            "explain.groups",
            "pass groups from make_groups(model, dm, 'model')",
        )
    mods = list(model.modalities)
    widths = [int(model.spec.n_features[m]) for m in mods]
    names = {m: feature_names(dm, m) for m in mods}
    rng = np.random.default_rng(seed)

    def rows(idx: np.ndarray) -> np.ndarray:
        return np.concatenate([dense_rows(dm, m, idx) for m in mods], axis=1)

    pool = observed(dm, mods, dm.cells(cells))
    tables, records = [], []
    for name in groups.names:
        if only_groups is not None and name not in only_groups:
            continue
        members = pool[groups.codes[pool] == groups.names.index(name)]
        if len(members) < min_cells:
            continue
        x = rows(sample_cells(members, n_explain, rng))
        bg = _background(background, rows, groups, dm, mods, name, n_background, rng)
        res = shap_values(
            Columns(net, [groups.column[name]]), x, bg, explainer, nsamples, batch_size, seed
        )
        imp = res.importance()[:, 0]
        start = 0
        for m, w in zip(mods, widths, strict=True):
            rel = imp[start : start + w]
            start += w
            tables.append(
                pd.DataFrame(
                    {
                        "group": name,
                        "modality": m,
                        "feature": names[m],
                        "relevance": rel,
                        "rank": _rank(rel),
                    }
                )
            )
        records.append(_record("group_relevance", name, "", "", res, len(x), len(bg)))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=GROUP_COLUMNS)
    return table.sort_values(
        ["group", "modality", "rank"], kind="stable", ignore_index=True
    ), records


def _record(table, group, src, dst, res: ShapResult, n_cells, n_bg) -> dict[str, Any]:
    return {
        "table": table,
        "group": group,
        "src": src,
        "dst": dst,
        "explainer": res.explainer,
        "reason": res.reason,
        "n_cells": int(n_cells),
        "n_background": int(n_bg),
        "n_outputs": int(res.values.shape[2]),
        "additivity_error": res.additivity_error,
    }


# ---------------------------------------------------------------------- feature relevance
def modality_pairs(modalities: Sequence[str], pairs: Sequence[str] | None = None) -> list[tuple]:
    """``(src, dst)`` pairs: all ordered pairs of distinct modalities, or ``"src:dst"`` items."""
    if pairs is None:
        return [(a, b) for a in modalities for b in modalities if a != b]
    out = []
    for item in pairs:
        src, sep, dst = str(item).partition(":")
        if not sep or src not in modalities or dst not in modalities:
            raise InputError(
                f"bad modality pair '{item}'",
                "explain.pairs",
                f"write pairs as src:dst with modalities from {list(modalities)}",
            )
        out.append((src, dst))
    return out


def choose_dst_features(
    x_dst: np.ndarray, names: list[str], n: int | None, always: Sequence[str] = ()
) -> np.ndarray:
    """Indices of the ``n`` most variable dst features among the group's cells, plus ``always``."""
    lookup = {v: i for i, v in enumerate(names)}
    forced = [lookup[f] for f in always if f in lookup]
    if n is None:
        chosen = list(range(len(names)))
    else:
        order = np.argsort(-x_dst.var(axis=0), kind="stable")
        chosen = [int(i) for i in order[: max(0, n)]]
    return np.array(sorted(set(chosen) | set(forced)), dtype=np.int64)


def feature_relevance(
    model: Any,
    dm: Any,
    groups: Groups,
    *,
    pairs: Sequence[str] | None = None,
    cells: str = "all",
    n_explain: int | None = 100,
    background: str = "group",
    n_background: int = 100,
    n_dst_features: int | None = 20,
    dst_features: Mapping[str, Sequence[str]] | None = None,
    src_features: Mapping[str, Sequence[str]] | None = None,
    top_src: int | None = 50,
    explainer: str = "auto",
    nsamples: int = 200,
    batch_size: int | None = None,
    min_cells: int = 5,
    only_groups: Sequence[str] | None = None,
    batch_code: int = 0,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Feature-to-feature relevance of ``src -> dst`` translation within each group.

    Parameters
    ----------
    groups
        The cell groups (:func:`make_groups`); each group's cells are explained separately.
    pairs
        ``"src:dst"`` items (default: every ordered pair of distinct modalities).
    n_dst_features
        dst features explained per (group, pair): the most variable among the group's cells
        (``None``: all).
    dst_features
        ``{modality: names}`` always explained when the modality is a dst.
    src_features
        ``{modality: names}`` always written to the table when the modality is a src, whatever
        their rank.
    top_src
        src features written per dst feature (the highest ranked; ``None``: all). Ranks are
        over all src features either way.
    background
        ``group`` (training cells of the same group, the default: within-group relevance),
        ``prototypes`` (per-group mean inputs) or ``train`` (sampled training cells).

    Returns
    -------
    table
        ``group, src, dst, src_feature, dst_feature, relevance, rank`` (rank 1 = the src
        feature with the largest mean |SHAP| for that dst feature in that group).
    records
        One dict per (group, pair): explainer used, sizes, additivity.
    """
    rng = np.random.default_rng(seed)
    tables, records = [], []
    for src, dst in modality_pairs(model.modalities, pairs):
        net = translator(model, src, dst, batch_code)
        src_names, dst_names = feature_names(dm, src), feature_names(dm, dst)
        keep_src = {v: i for i, v in enumerate(src_names)}
        forced_src = [keep_src[f] for f in (src_features or {}).get(src, ()) if f in keep_src]
        pool = observed(dm, (src, dst), dm.cells(cells))
        for name in groups.names:
            if only_groups is not None and name not in only_groups:
                continue
            members = pool[groups.codes[pool] == groups.names.index(name)]
            if len(members) < min_cells:
                continue
            idx = sample_cells(members, n_explain, rng)
            x = dense_rows(dm, src, idx)
            chosen = choose_dst_features(
                dense_rows(dm, dst, members),
                dst_names,
                n_dst_features,
                (dst_features or {}).get(dst, ()),
            )

            def rows(cells_: np.ndarray, m: str = src) -> np.ndarray:
                return dense_rows(dm, m, cells_)

            bg = _background(background, rows, groups, dm, (src, dst), name, n_background, rng)
            res = shap_values(Columns(net, chosen), x, bg, explainer, nsamples, batch_size, seed)
            imp = res.importance()  # (p_src, k)
            for j, d in enumerate(chosen):
                rel = imp[:, j]
                rank = _rank(rel)
                keep = np.arange(len(rel))
                if top_src is not None:
                    keep = np.union1d(np.flatnonzero(rank <= top_src), forced_src).astype(int)
                tables.append(
                    pd.DataFrame(
                        {
                            "group": name,
                            "src": src,
                            "dst": dst,
                            "src_feature": np.asarray(src_names, dtype=object)[keep],
                            "dst_feature": dst_names[d],
                            "relevance": rel[keep],
                            "rank": rank[keep],
                        }
                    )
                )
            records.append(_record("feature_relevance", name, src, dst, res, len(x), len(bg)))
    table = (
        pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=FEATURE_COLUMNS)
    )
    return (
        table.sort_values(
            ["group", "src", "dst", "dst_feature", "rank"], kind="stable", ignore_index=True
        ),
        records,
    )
