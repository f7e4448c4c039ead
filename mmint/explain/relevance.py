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

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from mmint.errors import InputError
from mmint.explain.subnets import Columns, group_network, translator

EXPLAINERS = ("auto", "deep", "gradient")
BACKGROUNDS = ("prototypes", "train", "group")
#: leaf modules without a DeepExplainer rule that are linear in their input (its pass-through
#: gradient is then exact)
LINEAR_LEAVES = {"WeightedMeanFuser", "AppendConstant"}
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


# ----------------------------------------------------------------------------- shap
@dataclass
class ShapResult:
    """SHAP values of ``k`` outputs for ``n`` cells and ``p`` inputs.

    Attributes
    ----------
    values
        ``(n, p, k)`` SHAP values.
    expected
        ``(k,)`` mean output over the background.
    output
        ``(n, k)`` outputs of the explained cells.
    explainer
        ``"deep"`` or ``"gradient"``.
    additivity_error
        ``max |output - expected - sum_p values|`` over cells and outputs (exact up to float
        error for DeepExplainer; only approximate for expected gradients).
    reason
        Why DeepExplainer was not used (empty when it was).
    """

    values: np.ndarray
    expected: np.ndarray
    output: np.ndarray
    explainer: str
    additivity_error: float
    reason: str = ""

    def importance(self) -> np.ndarray:
        """Mean ``|SHAP|`` over cells, ``(p, k)``."""
        return np.abs(self.values).mean(axis=0)


def deep_supported(net: nn.Module) -> tuple[bool, str]:
    """Whether every leaf module of ``net`` is one shap's DeepExplainer has a rule for."""
    try:
        from shap.explainers._deep.deep_pytorch import op_handler
    except ImportError:  # pragma: no cover - shap layout changed
        return True, ""
    unknown = sorted(
        {type(m).__name__ for m in net.modules() if not list(m.children())}
        - set(op_handler)
        - LINEAR_LEAVES
    )
    if unknown:
        return False, f"DeepExplainer has no rule for {', '.join(unknown)}"
    return True, ""


def _as_3d(values: Any) -> np.ndarray:
    if isinstance(values, list):
        values = np.stack([np.asarray(v) for v in values], axis=-1)
    values = np.asarray(values, dtype=np.float64)
    return values[..., None] if values.ndim == 2 else values


def _additivity(values: np.ndarray, expected: np.ndarray, output: np.ndarray) -> float:
    if len(output) == 0:
        return 0.0
    return float(np.abs(output - expected[None] - values.sum(axis=1)).max())


def _deep(net: nn.Module, bg: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    import shap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.DeepExplainer(net, bg)
        return _as_3d(explainer.shap_values(x, check_additivity=False))


def _gradient(
    net: nn.Module, bg: torch.Tensor, x: torch.Tensor, nsamples: int, batch_size: int, seed: int
) -> np.ndarray:
    import shap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.GradientExplainer(net, bg, batch_size=batch_size)
        return _as_3d(explainer.shap_values(x, nsamples=nsamples, rseed=seed))


def shap_values(
    net: nn.Module,
    x: np.ndarray | torch.Tensor,
    background: np.ndarray | torch.Tensor,
    explainer: str = "auto",
    nsamples: int = 200,
    batch_size: int | None = None,
    seed: int = 0,
    tol: float = 1e-2,
    n_probe: int = 2,
) -> ShapResult:
    """SHAP values of ``net`` (``(n, p) -> (n, k)``) for cells ``x`` against ``background``.

    Parameters
    ----------
    explainer
        ``"auto"`` (DeepExplainer when supported and additive within ``tol``, else
        GradientExplainer), ``"deep"`` (DeepExplainer, error when not additive) or
        ``"gradient"``.
    nsamples, batch_size
        GradientExplainer samples per cell and gradient batch size (default ``nsamples``:
        one backward pass per cell and output).
    seed
        Seed of GradientExplainer's sampling.
    tol
        Additivity tolerance (shap's own check uses 1e-2).
    n_probe
        Cells DeepExplainer is first tried on before explaining all of them.
    """
    if explainer not in EXPLAINERS:
        raise InputError(
            f"unknown explainer '{explainer}'", "explain.explainer", f"use {EXPLAINERS}"
        )
    net = net.eval()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    bg = torch.as_tensor(np.asarray(background, dtype=np.float32))
    with torch.no_grad():
        out = net(xt).double().numpy()
        expected = net(bg).double().mean(0).numpy()
    out = out.reshape(len(xt), -1)
    expected = expected.reshape(-1)
    reason = ""
    if explainer in ("auto", "deep"):
        ok, reason = deep_supported(net)
        if ok:
            try:
                probe = _deep(net, bg, xt[:n_probe])
                err = _additivity(probe, expected, out[:n_probe])
                if err <= tol:
                    rest = _deep(net, bg, xt[n_probe:]) if len(xt) > n_probe else probe[:0]
                    values = np.concatenate([probe, rest]) if len(rest) else probe
                    err = _additivity(values, expected, out)
                    if err <= tol:
                        return ShapResult(values, expected, out, "deep", err)
                reason = f"DeepExplainer additivity error {err:.3g} > {tol:g}"
            except Exception as exc:  # shap raises many kinds on unsupported graphs
                reason = f"DeepExplainer failed: {type(exc).__name__}: {exc}"[:300]
        if explainer == "deep":
            raise RuntimeError(f"DeepExplainer cannot explain this network: {reason}")
    values = _gradient(net, bg, xt, nsamples, batch_size or nsamples, seed)
    return ShapResult(
        values, expected, out, "gradient", _additivity(values, expected, out), reason or "asked"
    )


# ----------------------------------------------------------------------------- data
def dense_rows(dm: Any, modality: str, idx: np.ndarray) -> np.ndarray:
    """Model inputs of ``modality`` for cells ``idx`` as a dense float32 array."""
    x = dm.inputs[modality][np.asarray(idx, dtype=np.int64)]
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def feature_names(dm: Any, modality: str) -> list[str]:
    """Names of the model-input features of ``modality``."""
    mod = dm.data.modalities[modality]
    return [str(v) for v in mod.var_names[dm.transforms[modality].features]]


def observed(dm: Any, modalities: Sequence[str], idx: np.ndarray) -> np.ndarray:
    """The cells of ``idx`` that have every one of ``modalities``."""
    keep = np.ones(len(idx), dtype=bool)
    for m in modalities:
        keep &= dm.masks[m][idx] > 0
    return np.asarray(idx)[keep]


def explain_cells(
    dm: Any, groups: Groups, name: str, modalities: Sequence[str], cells: str = "all"
) -> np.ndarray:
    """Cells of group ``name`` among ``cells`` (``all``, ``train``, ...) that have every one of
    ``modalities``."""
    pool = observed(dm, modalities, dm.cells(cells))
    return pool[groups.codes[pool] == groups.names.index(name)]


def _sample(idx: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    idx = np.asarray(idx)
    if n is None or len(idx) <= n:
        return np.sort(idx)
    return np.sort(rng.choice(idx, size=n, replace=False))


@dataclass
class Groups:
    """A grouping of all cells: ``codes`` (``-1``: no group) and group ``names``."""

    codes: np.ndarray
    names: list[str]
    source: str
    column: dict[str, int] = field(default_factory=dict)  # group name -> model output column

    def cells(self, name: str) -> np.ndarray:
        """Indices of the cells of group ``name``."""
        return np.flatnonzero(self.codes == self.names.index(name))


@torch.no_grad()
def model_groups(model: Any, dm: Any) -> np.ndarray | None:
    """The model's group code of every cell (``None`` without a group head)."""
    if getattr(model, "name", None) == "unitednet" and model.task == "pgc_only":
        return None
    if hasattr(model, "eval"):
        model.eval()
    out = []
    for batch in dm.iter_batches(dm.cells("all")):
        g = model.predict_groups(batch)
        if g is None:
            return None
        out.append(g.cpu().numpy())
    return np.concatenate(out).astype(np.int64)


def make_groups(model: Any, dm: Any, by: str = "auto") -> Groups:
    """Cell groups for explaining.

    Parameters
    ----------
    by
        ``model`` (the model's group head; named by label for a classification head), ``label`` (``label_key``), ``class``
        (``class_key``), ``all`` (one group), an ``obs`` column name, or ``auto`` (``model``
        when the model has a group head, else ``label`` when the data has labels, else ``all``).
    """
    n = dm.data.n_cells
    if by in ("auto", "model"):
        codes = model_groups(model, dm)
        if codes is not None:
            k = int(getattr(getattr(model, "module", None), "n_groups", codes.max() + 1))
            names = [str(g) for g in range(k)]
            labels = list(model.spec.label_names)
            if getattr(model, "groups_are_labels", False) and len(labels) == k:
                names = labels  # a classification head: its groups are the label categories
            return Groups(codes, names, "model", {nm: i for i, nm in enumerate(names)})
        if by == "model":
            raise InputError(
                f"model '{model.name}' has no group head",
                "explain.groups",
                "use explain.groups=label, class, all or an obs column",
            )
        by = "label" if dm.data.label_key else "all"
    if by == "all":
        return Groups(np.zeros(n, dtype=np.int64), ["all"], "all")
    column = {"label": dm.data.label_key, "class": dm.data.class_key}.get(by, by)
    if column is None or column not in dm.data.obs.columns:
        known = ["model", "label", "class", "all", *map(str, dm.data.obs.columns)]
        raise InputError(
            f"no cell grouping '{by}' in this dataset", "explain.groups", f"use one of {known}"
        )
    col = dm.data.obs[column]
    valid = col.notna().to_numpy()
    values = col.astype(str).to_numpy()
    names = sorted(set(values[valid]))
    lookup = {v: i for i, v in enumerate(names)}
    codes = np.array([lookup[v] if ok else -1 for v, ok in zip(values, valid, strict=True)])
    return Groups(codes.astype(np.int64), names, by)


def group_composition(groups: Groups, dm: Any) -> pd.DataFrame:
    """Cells per (group, annotation value) for the label and class columns (tidy)."""
    rows = []
    obs = dm.data.obs
    for key in ("label_key", "class_key"):
        column = getattr(dm.data, key)
        if column is None:
            continue
        values = obs[column].astype(str).to_numpy()
        for gi, name in enumerate(groups.names):
            members = values[groups.codes == gi]
            if len(members) == 0:
                continue
            counts = pd.Series(members).value_counts()
            for value, count in counts.items():
                rows.append((name, column, value, int(count), count / len(members)))
    cols = ["group", "annotation", "value", "n_cells", "fraction"]
    return pd.DataFrame(rows, columns=cols)


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
            return rows(_sample(members, n_background, rng))
    return rows(_sample(train, n_background, rng))


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
        x = rows(_sample(members, n_explain, rng))
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
            idx = _sample(members, n_explain, rng)
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
