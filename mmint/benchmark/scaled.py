"""Scaled scores: every metric between its controls, category scores and the overall score.

A run's metric is rescaled with the controls of its own dataset, split and seed
(:mod:`mmint.benchmark.controls`) as Open Problems does: 0 = the worse of the two controls,
1 = the better one, in the metric's direction (lower is better for FOSCTTM and latent
distance), then clipped to ``clip``. Usually the random control is the worse one, so this is
``(score - random) / (control - random)``; where the random embedding is the better control
(iLISI: random noise mixes batches perfectly) the roles swap. A metric whose controls are less
than ``min_gap`` apart is not scaled (NaN). Raw values stay beside the scaled ones.

Categories are the means of their scaled metrics; ``integration`` = ``bio_weight`` x bio
conservation + ``batch_weight`` x batch correction (scIB's 0.6 / 0.4; bio alone with one
batch); the overall score is the weighted mean of the categories a run has (weights
renormalised over them, ``n_categories`` says how many).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mmint.errors import InputError
from mmint.metrics.scib import BATCH_METRICS, BIO_METRICS

#: metrics where lower is better
LOWER_IS_BETTER = ("foscttm", "latent_distance")
#: fixed metric columns per category (prediction's are matched by pattern, see ``metric_category``)
CATEGORY_METRICS: dict[str, tuple[str, ...]] = {
    "grouping": (
        "ari",
        "nmi",
        "ari_kmeans",
        "nmi_kmeans",
        "ari_class",
        "transfer_accuracy",
        "transfer_macro_f1",
    ),
    "bio_conservation": tuple(f"scib.metrics.{m}" for m in BIO_METRICS),
    "batch_correction": tuple(f"scib.metrics.{m}" for m in BATCH_METRICS),
    "alignment": LOWER_IS_BETTER,
}
#: cross-modal prediction: variance-weighted R2 (1 - sum SSE / sum SST: the uniform mean of
#: per-feature R2 is dominated, for the random control, by features whose test variance is far
#: below their training variance), per-cell Pearson, per-cell AUROC (binary targets)
_PREDICTION = re.compile(r"^(r2_variance_weighted|pearson|auroc)\.([^.]+)\.([^.]+)$")
#: the categories of the overall score (``integration`` combines bio and batch)
CATEGORIES = ("grouping", "integration", "prediction", "alignment")
CATEGORY_LABELS = {
    "grouping": "grouping",
    "bio_conservation": "bio conservation",
    "batch_correction": "batch correction",
    "integration": "integration",
    "prediction": "prediction",
    "alignment": "alignment",
}


@dataclass
class Scoring:
    """How scaled scores are combined (``suite.leaderboard`` / ``mmint report`` options)."""

    clip: tuple[float, float] = (0.0, 2.0)
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 1.0))
    bio_weight: float = 0.6
    batch_weight: float = 0.4
    min_gap: float = 0.01
    #: a category a run lacks while other runs on its dataset have it: ``zero`` counts it as
    #: 0 in the overall score (a model that does not do a task does not win on it), ``skip``
    #: averages over the categories the run has
    missing: str = "zero"

    def __post_init__(self) -> None:
        self.clip = (float(self.clip[0]), float(self.clip[1]))
        if not self.clip[0] < self.clip[1]:
            raise InputError(
                f"clip range {list(self.clip)} is empty", "leaderboard.clip", "use [low, high]"
            )
        unknown = sorted(set(self.weights) - set(CATEGORIES))
        if unknown:
            raise InputError(
                f"unknown categories {unknown}",
                "leaderboard.weights",
                f"use {', '.join(CATEGORIES)}",
            )
        self.weights = {c: float(self.weights.get(c, 0.0)) for c in CATEGORIES}
        if self.missing not in ("zero", "skip"):
            raise InputError(
                f"unknown missing-category rule '{self.missing}'",
                "leaderboard.missing",
                "use zero or skip",
            )
        if min(self.weights.values()) < 0 or not sum(self.weights.values()) > 0:
            raise InputError(
                "category weights must be >= 0 with a positive sum",
                "leaderboard.weights",
                "e.g. {grouping: 1, integration: 1, prediction: 1, alignment: 1}",
            )

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | None) -> Scoring:
        """From a plain dict with any of ``clip``, ``weights``, ``bio_weight``,
        ``batch_weight``, ``min_gap``, ``missing`` (other keys are ignored: they belong to the
        board)."""
        cfg = dict(cfg or {})
        keys = ("clip", "weights", "bio_weight", "batch_weight", "min_gap", "missing")
        kw = {k: cfg[k] for k in keys if cfg.get(k) is not None}
        if "weights" in kw:
            kw["weights"] = {**dict.fromkeys(CATEGORIES, 1.0), **dict(kw["weights"])}
        return cls(**kw)

    def describe(self) -> str:
        """One sentence with the clip range and the weights (for the report)."""
        w = ", ".join(f"{c} {self.weights[c]:g}" for c in CATEGORIES)
        rule = (
            "a category the model lacks on a dataset where others have it counts as 0"
            if self.missing == "zero"
            else "categories a model lacks are left out of its mean"
        )
        return (
            f"Scaled scores are clipped to [{self.clip[0]:g}, {self.clip[1]:g}]; overall = "
            f"weighted mean of the categories ({w}; {rule}); integration = "
            f"{self.bio_weight:g} bio conservation + {self.batch_weight:g} batch correction "
            "(bio alone with one batch)."
        )


def metric_category(column: str) -> str | None:
    """The category of a ``results.csv`` column (None: not scaled). Prediction metrics are
    the cross-modal entries ``r2.<src>.<dst>``, ``pearson.<src>.<dst>``, ``auroc.<src>.<dst>``
    with src != dst."""
    for cat, cols in CATEGORY_METRICS.items():
        if column in cols:
            return cat
    m = _PREDICTION.match(column)
    if m and m.group(2) != m.group(3):
        return "prediction"
    return None


def scaled_columns(columns: Sequence[str]) -> dict[str, str]:
    """``{column: category}`` of the scaled metrics among ``columns``."""
    return {c: cat for c in columns if (cat := metric_category(c)) is not None}


def scale(
    score: np.ndarray | float,
    random: np.ndarray | float,
    control: np.ndarray | float,
    higher_is_better: bool = True,
    clip: tuple[float, float] = (0.0, 2.0),
    min_gap: float = 0.01,
) -> np.ndarray:
    """Scale ``score`` so that the worse control is 0 and the better one 1 (in the metric's
    direction), clipped; NaN where a value is missing or the controls are closer than
    ``min_gap``."""
    s, r, c = (np.asarray(v, dtype=np.float64) for v in (score, random, control))
    sign = 1.0 if higher_is_better else -1.0
    lo, hi = np.minimum(sign * r, sign * c), np.maximum(sign * r, sign * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (sign * s - lo) / (hi - lo)
    out = np.where(hi - lo >= min_gap, out, np.nan)
    return np.clip(out, *clip)


def scale_runs(
    table: pd.DataFrame,
    random: pd.DataFrame,
    control: pd.DataFrame,
    scoring: Scoring,
    groups: pd.Series | None = None,
) -> pd.DataFrame:
    """Scaled metrics, category scores and the overall score of every row of ``table``.

    Parameters
    ----------
    table
        Runs (``results.csv`` rows).
    random, control
        The controls' value of each metric for each row (same index as ``table``; a column
        absent or NaN: that metric is not scaled for the row).
    scoring
        Clip range, weights and the missing-category rule.
    groups
        Each row's dataset (task): a category present for some rows of a dataset and missing
        for others follows ``scoring.missing``; default: one dataset.

    Returns
    -------
    pandas.DataFrame
        Same index: ``scaled.<metric>`` per scaled metric, ``category.<name>`` for grouping,
        bio_conservation, batch_correction, integration, prediction, alignment (NaN where the
        run has none), then ``overall``, ``n_categories`` (categories entering it) and
        ``missing_categories`` (those counted as 0, comma-separated).
    """
    out = pd.DataFrame(index=table.index)
    cols = scaled_columns([c for c in table.columns if c in random and c in control])
    members: dict[str, list[str]] = {}
    for col, cat in cols.items():
        out[f"scaled.{col}"] = scale(
            pd.to_numeric(table[col], errors="coerce"),
            pd.to_numeric(random[col], errors="coerce"),
            pd.to_numeric(control[col], errors="coerce"),
            higher_is_better=col not in LOWER_IS_BETTER,
            clip=scoring.clip,
            min_gap=scoring.min_gap,
        )
        members.setdefault(cat, []).append(f"scaled.{col}")
    for cat in (*CATEGORY_METRICS, "prediction"):
        names = members.get(cat, [])
        out[f"category.{cat}"] = out[names].mean(axis=1, skipna=True) if names else np.nan
    bio, batch = out["category.bio_conservation"], out["category.batch_correction"]
    both = (scoring.bio_weight * bio + scoring.batch_weight * batch) / (
        scoring.bio_weight + scoring.batch_weight
    )
    out["category.integration"] = both.where(batch.notna(), bio)
    cats = out[[f"category.{c}" for c in CATEGORIES]]
    groups = pd.Series("all", index=table.index) if groups is None else groups
    present = cats.notna().groupby(groups).transform("any")  # the dataset has the category
    w = np.array([scoring.weights[c] for c in CATEGORIES])
    fill = scoring.missing == "zero"
    used = (present if fill else cats.notna()).to_numpy() & (w > 0)
    values = cats.fillna(0.0).to_numpy(dtype=float) if fill else cats.to_numpy(dtype=float)
    wsum = (used * w).sum(axis=1)
    total = np.where(used, values, 0.0) @ w
    scored = cats.notna().any(axis=1).to_numpy()  # a run without controls gets no score
    with np.errstate(invalid="ignore", divide="ignore"):
        out["overall"] = np.where((wsum > 0) & scored, total / wsum, np.nan)
    out["n_categories"] = used.sum(axis=1)
    zeroed = (present & cats.isna()).to_numpy() & (w > 0) & fill
    out["missing_categories"] = [
        ",".join(c for c, z in zip(CATEGORIES, row, strict=True) if z) for row in zeroed
    ]
    return out
