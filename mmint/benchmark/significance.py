"""Is a ranking across datasets real? Friedman test and post-hoc tests over blocks.

The blocks are (dataset, seed) pairs, the treatments the models (model/variant entries), the
value a run's score (higher is better). Friedman's test (Demsar 2006) asks whether the models'
mean ranks differ at all; the post-hoc test which pairs differ:

- ``wilcoxon_holm`` (default): Wilcoxon signed-rank test of each pair on its paired block
  values, p-values adjusted with Holm's step-down method. A pair's verdict depends only on the
  two models' own scores (Benavoli, Corani & Mangili 2016: mean-rank tests such as Nemenyi's
  change a pair's verdict when other models are added or removed), and it uses the size of
  the differences, not only their order;
- ``nemenyi``: Nemenyi's test on the mean ranks (Demsar 2006's critical difference,
  ``q_alpha * sqrt(k (k + 1) / (6 n))``), as scikit-posthocs' ``posthoc_nemenyi_friedman``.

Blocks must be complete: :func:`complete_blocks` keeps the models and blocks that give the
most observations and says what it left out.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

POSTHOC = ("wilcoxon_holm", "nemenyi")


@dataclass
class Friedman:
    """Friedman's test on a blocks x models matrix."""

    statistic: float
    pvalue: float
    n_blocks: int
    n_models: int
    #: mean rank per model (1 = best: the highest value in a block)
    mean_ranks: pd.Series = field(default_factory=pd.Series)


def block_ranks(matrix: pd.DataFrame) -> pd.DataFrame:
    """Ranks within each block (row), 1 = the highest value, ties averaged."""
    return matrix.rank(axis=1, ascending=False, method="average")


def friedman(matrix: pd.DataFrame) -> Friedman:
    """Friedman's chi-square with the tie correction (as :func:`scipy.stats.friedmanchisquare`).

    Parameters
    ----------
    matrix
        Blocks x models, complete (no NaN), at least 3 models and 2 blocks.
    """
    values = matrix.to_numpy(dtype=float)
    n, k = values.shape
    if k < 3 or n < 2 or not np.isfinite(values).all():
        raise ValueError(
            f"Friedman's test needs >= 3 models and >= 2 complete blocks, got {k}, {n}"
        )
    ranks = stats.rankdata(values, axis=1)
    rank_sums = ranks.sum(axis=0)
    chi2 = 12.0 / (n * k * (k + 1)) * np.sum(rank_sums**2) - 3.0 * n * (k + 1)
    ties = 0.0
    for row in values:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    correction = 1.0 - ties / (n * k * (k * k - 1))
    chi2 = chi2 / correction if correction > 0 else np.nan
    p = float(stats.chi2.sf(chi2, k - 1)) if np.isfinite(chi2) else np.nan
    return Friedman(float(chi2), p, n, k, block_ranks(matrix).mean(axis=0))


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        adjusted[j] = running
    return adjusted


def wilcoxon_holm(matrix: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjusted p-values of the two-sided Wilcoxon signed-rank test of every pair of
    models (columns), paired by block; zero differences are dropped (``zero_method='wilcox'``)
    and a pair with no non-zero difference gets p = 1."""
    names = list(matrix.columns)
    pairs = list(itertools.combinations(range(len(names)), 2))
    raw = np.ones(len(pairs))
    values = matrix.to_numpy(dtype=float)
    for i, (a, b) in enumerate(pairs):
        if np.any(values[:, a] != values[:, b]):
            with warnings.catch_warnings():  # few blocks: scipy warns about the exact null
                warnings.simplefilter("ignore")
                raw[i] = stats.wilcoxon(values[:, a], values[:, b], zero_method="wilcox").pvalue
    adjusted = holm(raw)
    out = np.ones((len(names), len(names)))
    for (a, b), p in zip(pairs, adjusted, strict=True):
        out[a, b] = out[b, a] = p
    return pd.DataFrame(out, index=names, columns=names)


def nemenyi(matrix: pd.DataFrame) -> pd.DataFrame:
    """Nemenyi's p-values from the mean ranks (studentized range, infinite df)."""
    n, k = matrix.shape
    ranks = block_ranks(matrix).mean(axis=0).to_numpy()
    se = np.sqrt(k * (k + 1) / (6.0 * n))
    q = np.abs(ranks[:, None] - ranks[None, :]) / se * np.sqrt(2.0)
    p = stats.studentized_range.sf(q, k, np.inf)
    np.fill_diagonal(p, 1.0)
    return pd.DataFrame(np.minimum(p, 1.0), index=matrix.columns, columns=matrix.columns)


def nemenyi_cd(n_models: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Demsar's critical difference of mean ranks for Nemenyi's test."""
    q = stats.studentized_range.ppf(1 - alpha, n_models, np.inf) / np.sqrt(2.0)
    return float(q * np.sqrt(n_models * (n_models + 1) / (6.0 * n_blocks)))


def posthoc(matrix: pd.DataFrame, method: str = "wilcoxon_holm") -> pd.DataFrame:
    """The post-hoc p-value matrix of ``method`` (one of :data:`POSTHOC`)."""
    if method == "wilcoxon_holm":
        return wilcoxon_holm(matrix)
    if method == "nemenyi":
        return nemenyi(matrix)
    raise ValueError(f"unknown post-hoc test {method!r}; use one of {POSTHOC}")


def cliques(mean_ranks: pd.Series, pvalues: pd.DataFrame, alpha: float = 0.05) -> list[list[str]]:
    """Maximal runs of models, consecutive by mean rank, no two of which differ significantly
    (the bars of a critical-difference diagram); single models are left out."""
    order = list(mean_ranks.sort_values(kind="stable").index)
    runs: list[tuple[int, int]] = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and all(
            pvalues.loc[order[a], order[j + 1]] >= alpha for a in range(i, j + 1)
        ):
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return [order[a : b + 1] for a, b in runs]


@dataclass
class BlockMatrix:
    """Complete blocks x models values, and what was left out to make them complete."""

    matrix: pd.DataFrame
    dropped_models: list[str]
    dropped_blocks: list[str]


def complete_blocks(long: pd.DataFrame, value: str) -> BlockMatrix:
    """Blocks x models matrix of ``value`` from a long table (columns ``block``, ``entry``,
    ``value``) keeping the complete blocks of the model set that gives the most observations:
    models are dropped one at a time, the one missing from the most blocks first (ties: more
    models kept)."""
    wide = long.pivot_table(index="block", columns="entry", values=value, aggfunc="mean")
    wide = wide.dropna(axis=1, how="all")
    best: tuple[int, list[str]] = (-1, [])
    models = list(wide.columns)
    while len(models) >= 1:
        sub = wide[models]
        n_complete = int(sub.notna().all(axis=1).sum())
        if n_complete * len(models) > best[0]:
            best = (n_complete * len(models), list(models))
        missing = sub.isna().sum(axis=0)
        if missing.max() == 0:
            break
        models.remove(missing.idxmax())
    keep = best[1]
    sub = wide[keep]
    complete = sub.notna().all(axis=1)
    return BlockMatrix(
        matrix=sub[complete],
        dropped_models=[m for m in wide.columns if m not in keep],
        dropped_blocks=[str(b) for b in sub.index[~complete]],
    )
