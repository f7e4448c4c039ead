"""The smallest ARI difference a dataset's seeds and test cells can detect.

A paired hierarchical bootstrap per dataset: each replicate draws the seeds with
replacement and, within each drawn seed, the test cells with replacement (the same cells for
every model: the models share the split), recomputes every model's ARI on them and averages
over the drawn seeds. The standard error of a pair's mean ARI difference is the sd of its
replicates; the detectable difference (two-sided alpha, given power) is
``(z_{1 - alpha/2} + z_{power}) x SE`` and the dataset's is the median over pairs. A dataset is
*too small to separate the models* when fewer than half of the model pairs differ (in mean
ARI) by more than their detectable difference.

Per-cell groups come from the runs' ``outputs.h5mu`` (the group head's ``obs['<model>_group']``,
else KMeans on the test cells' joint latent, as :func:`mmint.evaluate.group_scores` does).
Where a run's folder is not kept the cells are simulated (the *surrogate* approximation): the
true labels of its test cells (from the data and the seed's split, as the controls have them)
with a fraction of cells relabelled uniformly at random, the fraction chosen by bisection so
that the surrogate's ARI equals the run's recorded ARI. The surrogate keeps the number of
cells, the label sizes and the ARI level of each run and seed, but not the structure of the
model's errors nor the pairing between models (errors independent between models: wider
intervals, a conservative detectable difference).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def ari_codes(labels: np.ndarray, groups: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Adjusted Rand index of two integer codings (``0..n-1``), fast for repeated calls;
    ``weights`` counts each cell that many times (a bootstrap resample)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    w = np.ones(labels.size) if weights is None else np.asarray(weights, dtype=float)
    n_g = int(groups.max()) + 1 if groups.size else 1
    table = np.bincount(labels * n_g + groups, weights=w, minlength=(int(labels.max()) + 1) * n_g)

    def pairs(x: np.ndarray) -> float:
        return float(np.sum(x * (x - 1)) / 2.0)

    n = float(w.sum())
    index = pairs(table)
    a = pairs(table.reshape(-1, n_g).sum(axis=1))
    b = pairs(table.reshape(-1, n_g).sum(axis=0))
    total = n * (n - 1) / 2.0
    expected = a * b / total if total > 0 else 0.0
    top = (a + b) / 2.0
    if top == expected:  # one cluster each (or identical trivial codings)
        return 1.0
    return float((index - expected) / (top - expected))


def _codes(x: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(x), return_inverse=True)[1].astype(np.int64)


def surrogate_groups(
    labels: np.ndarray, target_ari: float, seed: int | Sequence[int] = 0
) -> np.ndarray:
    """Labels with a fraction of cells relabelled uniformly at random, the fraction chosen
    (bisection, 30 steps) so that the ARI with ``labels`` is closest to ``target_ari``."""
    labels = _codes(labels)
    k = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(labels.size)  # cells relabelled first
    noise = rng.integers(0, k, labels.size)

    def at(fraction: float) -> np.ndarray:
        g = labels.copy()
        m = int(round(fraction * labels.size))
        g[order[:m]] = noise[order[:m]]
        return g

    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if ari_codes(labels, at(mid)) > target_ari:
            lo = mid
        else:
            hi = mid
    return at((lo + hi) / 2)


@dataclass
class SeedCells:
    """One seed's test cells: label codes and each model's groups (None: not available)."""

    labels: np.ndarray
    groups: dict[str, np.ndarray]


def bootstrap_ari(
    seeds: Sequence[SeedCells], models: Sequence[str], n_boot: int = 500, seed: int = 0
) -> np.ndarray:
    """Replicates x models: the mean over resampled seeds of each model's ARI on resampled
    test cells (paired: one cell resample per drawn seed for every model)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, len(models)))
    for b in range(n_boot):
        drawn = rng.integers(0, len(seeds), len(seeds))
        for s in drawn:
            cells = seeds[s]
            w = np.bincount(
                rng.integers(0, cells.labels.size, cells.labels.size), minlength=cells.labels.size
            )
            for j, m in enumerate(models):
                out[b, j] += ari_codes(cells.labels, cells.groups[m], w)
        out[b] /= len(seeds)
    return out


@dataclass
class Detectable:
    """A dataset's detectable ARI difference and how many model pairs exceed it."""

    mdd: float
    n_pairs: int
    n_resolved: int
    per_pair: pd.DataFrame
    how: str
    #: why ARI cannot rank models here at all (e.g. the controls' ARI coincide); '' if it can
    degenerate: str = ""

    @property
    def too_small(self) -> bool:
        """ARI is degenerate here, or fewer than half of the pairs differ by more than their
        detectable difference."""
        return bool(self.degenerate) or (self.n_pairs > 0 and self.n_resolved < self.n_pairs / 2)


def detectable_difference(
    seeds: Sequence[SeedCells],
    observed: Mapping[str, float],
    n_boot: int = 500,
    alpha: float = 0.05,
    power: float = 0.8,
    seed: int = 0,
    how: str = "per-cell",
) -> Detectable:
    """The detectable ARI difference of one dataset from its seeds' cells.

    Parameters
    ----------
    seeds
        Each seed's test cells with every model's groups.
    observed
        Each model's mean ARI over seeds (the report's value), for the resolved pairs.
    """
    models = [m for m in observed if all(m in s.groups for s in seeds)]
    reps = bootstrap_ari(seeds, models, n_boot, seed)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    rows = []
    for a, b in itertools.combinations(range(len(models)), 2):
        se = float(np.std(reps[:, a] - reps[:, b], ddof=1))
        diff = float(observed[models[a]] - observed[models[b]])
        rows.append({"a": models[a], "b": models[b], "diff": diff, "se": se, "mdd": z * se})
    per_pair = pd.DataFrame(rows, columns=["a", "b", "diff", "se", "mdd"])
    # pairs with the same groups on every cell (no difference, no variance) are ties, not pairs
    # a larger test set could separate
    tied = (per_pair["diff"] == 0) & (per_pair["se"] == 0)
    per_pair = per_pair[~tied].reset_index(drop=True)
    resolved = int((per_pair["diff"].abs() > per_pair["mdd"]).sum())
    mdd = float(per_pair["mdd"].median()) if len(per_pair) else float("nan")
    d = Detectable(mdd, len(per_pair), resolved, per_pair, how)
    if not len(per_pair) and rows:
        d.degenerate = "every model has the same groups"
    return d


def run_groups(run_dir: Path, model: str, seed: int, labels: np.ndarray) -> np.ndarray | None:
    """A run's groups on its labelled test cells, in ``split.json``'s test order (the order of
    ``labels``, the controls' test labels, -1 unlabelled): the group head's
    ``obs['<model>_group']`` of ``outputs.h5mu``, else KMeans (K = the number of distinct
    labels, the run's seed) on the joint latent, as :func:`mmint.evaluate.group_scores`
    computes them. None when the run's folder lacks the files or its test cells differ."""
    import h5py
    from anndata.io import read_elem

    from mmint.io import read_json
    from mmint.metrics.clustering import kmeans_labels

    path, split = Path(run_dir) / "outputs.h5mu", Path(run_dir) / "split.json"
    if not path.exists() or not split.exists():
        return None
    test = [str(c) for c in read_json(split).get("test", [])]
    if len(test) != labels.size:
        return None
    with h5py.File(path, "r") as f:
        obs = read_elem(f["obs"])
        joint = f["obsm"][f"X_{model}"][()] if f"X_{model}" in f.get("obsm", {}) else None
    pos = pd.Index(obs.index.astype(str)).get_indexer(test)
    if (pos < 0).any():
        return None
    lab = labels >= 0
    column = f"{model}_group"
    if column in obs:
        return _codes(obs[column].astype(str).to_numpy()[pos][lab])
    if joint is None:
        return None
    k = len(np.unique(labels[lab]))
    return kmeans_labels(np.asarray(joint)[pos][lab], k, seed=seed)
