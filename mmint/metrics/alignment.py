"""Alignment of paired latents: FOSCTTM and latent distance (lower is better for both).

``z_a[i]`` and ``z_b[i]`` are the two modalities' latents of the same cell ``i``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

#: Target number of distances held at once (float64: 32 MiB).
CHUNK_ENTRIES: int = 2**22

#: default bound on the cells FOSCTTM (quadratic in them) sees (``eval.foscttm_max_cells``)
FOSCTTM_MAX_CELLS = 20_000

HOW_ALL = "all scored cells (not more than max_cells)"
HOW_UNIFORM = "uniform: max_cells cells drawn without replacement by numpy default_rng(seed)"


def _check_paired(z_a: np.ndarray, z_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z_a = np.asarray(z_a, dtype=np.float64)
    z_b = np.asarray(z_b, dtype=np.float64)
    if z_a.ndim != 2 or z_b.ndim != 2:
        raise ValueError(f"latents must be 2-dimensional, got {z_a.shape} and {z_b.shape}")
    if z_a.shape != z_b.shape:
        raise ValueError(f"paired latents differ in shape: {z_a.shape} vs {z_b.shape}")
    return z_a, z_b


def _fraction_closer(query: np.ndarray, target: np.ndarray, chunk_size: int) -> np.ndarray:
    """For each row i of ``query``: the number of rows j != i of ``target`` strictly closer to
    ``query[i]`` than ``target[i]`` is, out of ``n - 1``.

    Distances of a chunk of query rows to all targets come from one :func:`cdist` call, and the
    true-match distance is read from the same matrix, so the comparison is exact.
    """
    n = query.shape[0]
    out = np.empty(n)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        dist = cdist(query[start:stop], target)  # (chunk, n), Euclidean, float64
        rows = np.arange(stop - start)
        true_match = dist[rows, rows + start]
        out[start:stop] = np.count_nonzero(dist < true_match[:, None], axis=1)
    return out / (n - 1)


def foscttm(z_a: np.ndarray, z_b: np.ndarray, chunk_size: int | None = None) -> float:
    """Fraction Of Samples Closer Than the True Match, averaged over cells and both directions.

    With Euclidean distances ``d(i, j) = ||z_a[i] - z_b[j]||``: for each cell ``i`` of modality
    a, the fraction of the other ``n - 1`` cells ``j`` of modality b with
    ``d(i, j) < d(i, i)`` (strictly; ties are not counted); likewise from b to a. The result
    is the mean over the ``2 n`` fractions. 0 is perfect alignment, about 0.5 is random.

    The ``n x n`` distance matrix is never built at once: rows are processed in chunks (float64),
    each direction separately.

    Parameters
    ----------
    z_a
        Latents of modality a, shape (n_cells, n_dims).
    z_b
        Latents of modality b of the same cells in the same order, shape (n_cells, n_dims).
    chunk_size
        Rows per chunk; default about 4M distances per chunk.

    Returns
    -------
    float
        FOSCTTM in [0, 1]; ``nan`` with fewer than 2 cells.
    """
    z_a, z_b = _check_paired(z_a, z_b)
    n = z_a.shape[0]
    if n < 2:
        return float("nan")
    chunk_size = chunk_size or max(1, CHUNK_ENTRIES // n)
    a_to_b = _fraction_closer(z_a, z_b, chunk_size)
    b_to_a = _fraction_closer(z_b, z_a, chunk_size)
    return float((a_to_b.mean() + b_to_a.mean()) / 2)


def seeded_subsample(
    cells: np.ndarray, max_cells: int | None, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """``cells`` (in order) when there are at most ``max_cells`` (``None``: no bound), else a
    sorted uniform draw of ``max_cells`` of them by ``numpy.random.default_rng(seed)``; and how
    they were chosen (``{"n_cells", "n_cells_total", "max_cells", "how", "seed"}``, the
    fields of ``scib.subsample``)."""
    cells = np.asarray(cells)
    info: dict[str, Any] = {"n_cells_total": int(len(cells)), "max_cells": max_cells}
    if max_cells is None or len(cells) <= max_cells:
        return cells, {**info, "n_cells": int(len(cells)), "how": HOW_ALL, "seed": None}
    pick = np.sort(np.random.default_rng(seed).choice(len(cells), int(max_cells), replace=False))
    return cells[pick], {**info, "n_cells": int(max_cells), "how": HOW_UNIFORM, "seed": int(seed)}


def foscttm_subsampled(
    z_a: np.ndarray, z_b: np.ndarray, max_cells: int | None, seed: int = 0
) -> tuple[float, dict[str, Any]]:
    """:func:`foscttm` on at most ``max_cells`` paired cells (a seeded uniform subsample
    above it, :func:`seeded_subsample`) and how they were chosen."""
    idx, info = seeded_subsample(np.arange(len(z_a)), max_cells, seed)
    return foscttm(np.asarray(z_a)[idx], np.asarray(z_b)[idx]), info


def latent_distance(z_a: np.ndarray, z_b: np.ndarray, seed: int = 0) -> float:
    """Mean paired distance divided by the mean distance between randomly paired cells.

    ``mean_i ||z_a[i] - z_b[i]|| / mean_i ||z_a[i] - z_b[perm[i]]||`` with ``perm`` a uniform
    random permutation of the cells from ``numpy.random.default_rng(seed)`` (a permutation may
    keep a few cells in place; on average one). Scale-free: 0 is perfect alignment, about 1 is
    no better than random pairs.

    Parameters
    ----------
    z_a
        Latents of modality a, shape (n_cells, n_dims).
    z_b
        Latents of modality b of the same cells in the same order.
    seed
        Seed of the random pairing.

    Returns
    -------
    float
        The ratio; ``nan`` with fewer than 2 cells or when all random-pair distances are 0.
    """
    z_a, z_b = _check_paired(z_a, z_b)
    n = z_a.shape[0]
    if n < 2:
        return float("nan")
    perm = np.random.default_rng(seed).permutation(n)
    paired = np.linalg.norm(z_a - z_b, axis=1).mean()
    random_pairs = np.linalg.norm(z_a - z_b[perm], axis=1).mean()
    if random_pairs == 0:
        return float("nan")
    return float(paired / random_pairs)
