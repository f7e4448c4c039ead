"""A seeded, label-stratified subsample of the scored cells for the scIB metrics.

Several scIB metrics cost O(n^2) in the number of cells (silhouette_label, isolated_labels'
ASW, BRAS, the exact kNN graph behind LISI, kBET and graph connectivity). Above
``max_cells`` they run on a subsample: every label keeps its share of the cells (largest
remainder rounding, at least one cell per label), the cells of each label drawn without
replacement by ``numpy.random.default_rng(seed)``. The result says how it was chosen so that
``metrics.json`` can record it (``scib.subsample``): never a silent subsample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: default bound on the cells the quadratic scIB metrics see (``eval.scib_max_cells``)
SCIB_MAX_CELLS = 20_000

HOW_ALL = "all scored cells (not more than max_cells)"
HOW_STRATIFIED = (
    "stratified by label: each label keeps its share of the cells (largest remainder, at "
    "least one), cells drawn without replacement by numpy default_rng(seed)"
)


def stratified_subsample(
    labels: np.ndarray, max_cells: int | None, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Indices of at most ``max_cells`` cells, stratified by label, and how they were chosen.

    Parameters
    ----------
    labels
        Label of each cell, shape (n_cells,).
    max_cells
        Bound on the cells kept; ``None`` or ``n_cells <= max_cells`` keeps every cell (the
        indices are then ``arange(n_cells)``, in order).
    seed
        Seed of the draw (same seed, same labels -> same cells).

    Returns
    -------
    indices
        Sorted indices into ``labels``.
    info
        ``{"n_cells", "n_cells_total", "max_cells", "how", "seed"}`` (``seed`` is ``None``
        when every cell is kept).

    Raises
    ------
    ValueError
        When ``max_cells`` is below the number of distinct labels (a label would vanish).
    """
    labels = np.asarray(labels).ravel()
    n = labels.shape[0]
    info: dict[str, Any] = {"n_cells_total": int(n), "max_cells": max_cells}
    if max_cells is None or n <= max_cells:
        return np.arange(n), {**info, "n_cells": int(n), "how": HOW_ALL, "seed": None}
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if max_cells < len(values):
        raise ValueError(
            f"max_cells={max_cells} is below the {len(values)} labels: raise eval.scib_max_cells"
        )
    take = _allocate(counts, int(max_cells))
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(inverse == i), size=k, replace=False)
        for i, k in enumerate(take)
        if k
    ]
    idx = np.sort(np.concatenate(chosen))
    return idx, {**info, "n_cells": int(idx.size), "how": HOW_STRATIFIED, "seed": int(seed)}


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Cells per label: proportional shares of ``total`` rounded by largest remainder, at least
    one per label, never more than the label has; sums to ``total``."""
    share = counts * (total / counts.sum())
    take = np.minimum(np.maximum(np.floor(share).astype(np.int64), 1), counts)
    # the at-least-one rule can overshoot: take back from the label furthest above its share
    while take.sum() > total:
        excess = np.where(take > 1, take - share, -np.inf)
        take[int(np.argmax(excess))] -= 1
    # hand the cells left to the labels furthest below their share (ties: lower index first)
    while take.sum() < total:
        deficit = np.where(take < counts, share - take, -np.inf)
        take[int(np.argmax(deficit))] += 1
    return take
