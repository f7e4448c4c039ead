"""Aggregation of ``results.csv`` over seeds: the headline metrics, means and sd per
dataset/model/variant, the metrics that do not apply, and the per-dataset mean rank."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mmint.benchmark.tables import NA, fmt_pm

#: headline metrics, in report order (ARI first), with whether higher is better
HEADLINE: dict[str, bool] = {
    "ari": True,
    "ari_kmeans": True,
    "nmi": True,
    "r2_cross": True,
    "foscttm": False,
    "latent_distance": False,
    "scib.bio_conservation": True,
    "scib.batch_correction": True,
    "scib.total": True,
    "fit_seconds": False,
}
LABELS = {
    "ari": "ARI",
    "ari_kmeans": "ARI (KMeans)",
    "nmi": "NMI",
    "r2_cross": "cross-modal R2",
    "foscttm": "FOSCTTM",
    "latent_distance": "latent distance",
    "scib.bio_conservation": "scIB bio",
    "scib.batch_correction": "scIB batch",
    "scib.total": "scIB total",
    "fit_seconds": "fit s",
    "ari_class": "ARI (class)",
    "n_groups": "groups",
    "transfer_accuracy": "transfer acc.",
    "transfer_macro_f1": "transfer macro-F1",
}
#: metrics shown after the headline ones when a run has them
EXTRA = ["ari_class", "transfer_accuracy", "transfer_macro_f1"]
#: metrics that enter the mean rank (quality, not cost); scIB batch is already in scIB total
RANKED = [m for m in HEADLINE if m not in ("fit_seconds", "scib.batch_correction")]
GROUP = ["data", "model", "variant"]
_R2 = re.compile(r"^r2\.([^.]+)\.([^.]+)$")


def with_derived(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``r2_cross``: the mean of the off-diagonal ``r2.<src>.<dst>`` entries of a row."""
    table = table.copy()
    cols = [c for c in table.columns if (m := _R2.match(c)) and m.group(1) != m.group(2)]
    if cols:
        table["r2_cross"] = (
            table[cols].apply(pd.to_numeric, errors="coerce").mean(axis=1, skipna=True)
        )
    elif "r2_cross" not in table:
        table["r2_cross"] = np.nan
    return table


def ok_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of finished runs, with ``r2_cross``."""
    if "status" in table:
        table = table[table["status"] == "ok"]
    return with_derived(table)


def metrics_present(table: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The metrics with at least one value in ``table``."""
    return [
        m for m in metrics if m in table and pd.to_numeric(table[m], errors="coerce").notna().any()
    ]


def aggregate(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and sd (ddof 1) over seeds per dataset/model/variant: columns ``<metric>_mean``,
    ``<metric>_sd`` and ``n`` (runs)."""
    ok = ok_rows(table)
    metrics = metrics_present(ok, list(metrics or [*HEADLINE, *EXTRA, "n_groups"]))
    if ok.empty:
        return pd.DataFrame(columns=[*GROUP, "n"])
    values = ok[GROUP + metrics].copy()
    for m in metrics:
        values[m] = pd.to_numeric(values[m], errors="coerce")
    grouped = values.groupby(GROUP, sort=False)
    out = grouped.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = grouped[m].mean()
        out[f"{m}_sd"] = grouped[m].std(ddof=1)
        # the metric does not apply to the model (metrics.json not_applicable)
        na = ok[na_column(m)].fillna("").astype(str) != "" if na_column(m) in ok else None
        out[f"{m}_na"] = (
            na.groupby([ok[g] for g in GROUP], sort=False).any() if na is not None else False
        )
    return out.reset_index()


def na_column(metric: str) -> str:
    """The ``results.csv`` column holding why ``metric`` does not apply (``r2_cross`` -> r2's,
    ``scib.total`` -> scib's)."""
    key = "r2" if metric == "r2_cross" else metric.split(".")[0]
    return f"not_applicable.{key}"


def cell(r: pd.Series, metric: str, digits: int = 3) -> str:
    """``mean ± sd`` of a metric in an aggregated row, ``n/a`` where it does not apply."""
    mean = r.get(f"{metric}_mean")
    if (mean is None or not np.isfinite(mean)) and bool(r.get(f"{metric}_na", False)):
        return NA
    return fmt_pm(mean, r.get(f"{metric}_sd"), digits)


def not_applicable_notes(table: pd.DataFrame) -> list[str]:
    """One note per model and reason: which metrics do not apply to it and why."""
    ok = ok_rows(table)
    cols = [c for c in ok.columns if c.startswith("not_applicable.")]
    reasons: dict[tuple[str, str], list[str]] = {}
    for _, r in ok.drop_duplicates("model").iterrows():
        for c in cols:
            if isinstance(r[c], str) and r[c]:
                reasons.setdefault((r["model"], r[c]), []).append(c.split(".", 1)[1])
    return [
        f"`{NA}` for `{model}`: {', '.join(metrics)}: {why}."
        for (model, why), metrics in reasons.items()
    ]


def ranks(agg: pd.DataFrame, metrics: Sequence[str] = RANKED) -> pd.Series:
    """Per dataset: each model/variant's mean rank over ``metrics`` (1 = best), ranked again."""
    out = pd.Series(np.nan, index=agg.index)
    for _, sub in agg.groupby("data", sort=False):
        per = []
        for m in metrics:
            col = f"{m}_mean"
            if col in sub and sub[col].notna().any():
                per.append(sub[col].rank(ascending=not HEADLINE.get(m, True), method="average"))
        if per:
            out[sub.index] = pd.concat(per, axis=1).mean(axis=1).rank(method="min")
    return out
