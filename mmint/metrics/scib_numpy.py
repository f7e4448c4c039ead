"""numpy/scipy ports of the scib-metrics functions behind the ``scib`` block.

scib-metrics 0.5.10 computes these with JAX: importing it (it imports umap and pynndescent, whose
numba kernels compile at import) and tracing its jitted kernels for every new shape cost tens of
CPU seconds per process, more than the arithmetic on a few thousand cells. These ports follow
the scib-metrics code step by step (same definitions, same edge cases) in float64 numpy, so
the values agree with scib-metrics' float32 ones to about 1e-7 (``tests/metrics`` checks
each against scib-metrics itself on seeded toys, tolerance 1e-6):

- :func:`silhouette_samples` (``scib_metrics.utils.silhouette_samples``: nearest or
  ``mean_other`` between-cluster distances, Euclidean or cosine);
- :func:`silhouette_label`, :func:`isolated_labels` (ASW variant), :func:`bras`;
- :func:`lisi_knn`, :func:`ilisi_knn`, :func:`clisi_knn` (the perplexity binary search of
  ``compute_simpson_index``, vectorised over cells);
- :func:`graph_connectivity`.

They take the neighbour graph as :class:`Knn` (indices and distances, self first), computed
once per embedding and shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

#: rows of the distance matrix held at once (silhouettes)
CHUNK_ROWS = 1024
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Knn:
    """k nearest neighbours of every cell, itself included (first), sorted by distance."""

    indices: np.ndarray
    distances: np.ndarray

    @property
    def n_neighbors(self) -> int:
        """k (the cell itself included)."""
        return int(self.indices.shape[1])

    def subset(self, k: int) -> Knn:
        """The ``k`` nearest of them."""
        return Knn(self.indices[:, :k], self.distances[:, :k])

    def graph_distances(self) -> sp.csr_matrix:
        """Sparse (n_cells, n_cells) matrix of the distances, as scib-metrics builds it."""
        n, k = self.indices.shape
        rowptr = np.arange(0, n * k + 1, k)
        return sp.csr_matrix((self.distances.ravel(), self.indices.ravel(), rowptr), shape=(n, n))


def exact_knn(z: np.ndarray, n_neighbors: int) -> Knn:
    """Exact Euclidean kNN (float64, sklearn), k capped at ``n_cells``."""
    from sklearn.neighbors import NearestNeighbors

    z = np.asarray(z, dtype=np.float64)  # float64: reproducible distances
    k = min(int(n_neighbors), z.shape[0])
    distances, indices = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    return Knn(indices=indices, distances=distances)


def _codes(values: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].ravel()


def _distances(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise distances of the rows of ``a`` and ``b`` (float64)."""
    dots = a @ b.T
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", a, a))[:, None] * np.sqrt(np.einsum("ij,ij->i", b, b))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.clip(1.0 - dots / norms, 0.0, 2.0)
    sq = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2 * dots
    return np.sqrt(np.maximum(sq, 0.0))


def silhouette_samples(
    x: np.ndarray,
    labels: np.ndarray,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    between: Literal["nearest", "mean_other"] = "nearest",
) -> np.ndarray:
    """Silhouette of every cell, as ``scib_metrics.utils.silhouette_samples``.

    Parameters
    ----------
    x
        Array of shape (n_cells, n_dims).
    labels
        Cluster of each cell, shape (n_cells,).
    metric
        ``euclidean`` or ``cosine`` (``1 - cos``, clipped to [0, 2]).
    between
        ``nearest``: mean distance to the nearest other cluster (the usual silhouette);
        ``mean_other``: mean distance to all cells of the other clusters (BRAS).

    Returns
    -------
    numpy.ndarray
        Float64 array of shape (n_cells,); undefined values (singleton clusters) are 0.
    """
    x = np.asarray(x, dtype=np.float64)
    codes = _codes(labels)
    n, n_clusters = codes.size, int(codes.max()) + 1
    freqs = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    onehot = np.zeros((n, n_clusters))
    onehot[np.arange(n), codes] = 1.0
    intra, inter = np.empty(n), np.empty(n)
    for start in range(0, n, CHUNK_ROWS):
        rows = np.arange(start, min(start + CHUNK_ROWS, n))
        d = _distances(x[rows], x, metric)
        if metric == "euclidean":
            d[np.arange(rows.size), rows] = 0.0  # exactly, as the direct difference gives
        sums = d @ onehot
        own = codes[rows]
        intra[rows] = sums[np.arange(rows.size), own]
        if between == "nearest":
            sums[np.arange(rows.size), own] = np.inf
            inter[rows] = (sums / freqs).min(axis=1)
        else:
            other = sums.sum(axis=1) - intra[rows]
            with np.errstate(divide="ignore", invalid="ignore"):
                inter[rows] = other / (n - freqs[own])
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = intra / (freqs[codes] - 1)
        sil = (inter - intra) / np.maximum(intra, inter)
    return np.nan_to_num(sil, nan=0.0, posinf=_F32_MAX, neginf=-_F32_MAX)


def silhouette_label(x: np.ndarray, labels: np.ndarray) -> float:
    """Label ASW rescaled to [0, 1] (``scib_metrics.silhouette_label``)."""
    return float((np.mean(silhouette_samples(x, labels)) + 1) / 2)


def isolated_labels(x: np.ndarray, labels: np.ndarray, batches: np.ndarray) -> float:
    """Isolated-label ASW score (``scib_metrics.isolated_labels``, ``iso_threshold=None``).

    Labels present in the fewest batches are the isolated ones; the score is the mean over
    them of their cells' mean rescaled silhouette against all labels.
    """
    labels, batches = np.asarray(labels).ravel(), np.asarray(batches).ravel()
    names, label_codes = np.unique(labels, return_inverse=True)
    batch_codes = _codes(batches)
    pairs = np.unique(np.stack([label_codes, batch_codes]), axis=1)
    n_batches = np.bincount(pairs[0], minlength=names.size)
    isolated = np.flatnonzero(n_batches <= n_batches.min())
    sil = (silhouette_samples(x, label_codes) + 1) / 2
    return float(np.mean([sil[label_codes == i].mean() for i in isolated]))


def bras(x: np.ndarray, labels: np.ndarray, batches: np.ndarray) -> float | None:
    """Batch removal adapted silhouette (``scib_metrics.bras``: cosine, ``mean_other``).

    Per label spanning 2+ batches (and fewer batches than cells): ``1 - |silhouette|`` of its
    cells with the batch as cluster, averaged per label, then over labels. ``None`` when no
    label qualifies (scib-metrics raises there).
    """
    labels, batches = np.asarray(labels).ravel(), np.asarray(batches).ravel()
    x = np.asarray(x, dtype=np.float64)
    per_label = []
    for label in np.unique(labels):
        mask = labels == label
        n_batches = np.unique(batches[mask]).size
        if n_batches == 1 or n_batches == int(mask.sum()):
            continue
        sil = silhouette_samples(x[mask], batches[mask], metric="cosine", between="mean_other")
        per_label.append(np.mean(1 - np.abs(sil)))
    return float(np.mean(per_label)) if per_label else None


def simpson_index(
    knn: Knn, labels: np.ndarray, perplexity: float, tol: float = 1e-5, max_tries: int = 50
) -> np.ndarray:
    """Simpson index of every cell's neighbour label distribution
    (``scib_metrics.utils.compute_simpson_index``).

    Per cell, a Gaussian kernel over its neighbours (itself excluded) whose precision ``beta``
    is bisected until the entropy is within ``tol`` of ``log(perplexity)`` (at most
    ``max_tries`` steps), then the sum of squared per-label probabilities; -1 where the kernel
    vanishes. The search runs for all cells at once.
    """
    # scib-metrics hands float32 distances to JAX: the same values here
    d = np.asarray(knn.distances, dtype=np.float32).astype(np.float64)
    idx = np.asarray(knn.indices)
    codes = _codes(labels)
    n_labels = int(codes.max()) + 1
    keep = idx != np.arange(idx.shape[0])[:, None]
    target = np.log(np.float32(perplexity))

    n = d.shape[0]
    beta, lo, hi = np.ones(n), np.full(n, -np.inf), np.full(n, np.inf)
    h, p = _h_beta(d, keep, beta)
    diff = h - target
    tries = np.zeros(n, dtype=np.int64)
    active = (np.abs(diff) >= tol) & (tries < max_tries)
    while active.any():
        up = diff > 0
        new_lo = np.where(up, beta, lo)
        new_hi = np.where(up, hi, beta)
        new_beta = np.where(
            up,
            np.where(hi == np.inf, beta * 2, (beta + hi) / 2),
            np.where(lo == -np.inf, beta / 2, (beta + lo) / 2),
        )
        rows = np.flatnonzero(active)
        lo[rows], hi[rows], beta[rows] = new_lo[rows], new_hi[rows], new_beta[rows]
        h_new, p_new = _h_beta(d[rows], keep[rows], beta[rows])
        h[rows], p[rows] = h_new, p_new
        diff[rows] = h_new - target
        tries[rows] += 1
        active = (np.abs(diff) >= tol) & (tries < max_tries)
    cell = np.repeat(np.arange(n), idx.shape[1])
    per_label = np.bincount(
        cell * n_labels + codes[idx].ravel(), weights=p.ravel(), minlength=n * n_labels
    ).reshape(n, n_labels)
    simpson = (per_label**2).sum(axis=1)
    return np.where(h == 0, -1.0, simpson)


def _h_beta(d: np.ndarray, keep: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and probabilities of the neighbour kernel ``exp(-d * beta)`` (self excluded)."""
    p = np.where(keep, np.exp(-d * beta[:, None]), 0.0)
    sum_p = p.sum(axis=1)
    zero = sum_p == 0
    safe = np.where(zero, 1.0, sum_p)
    h = np.where(zero, 0.0, np.log(safe) + beta * (d * p).sum(axis=1) / safe)
    return h, np.where(zero[:, None], 0.0, p / safe[:, None])


def lisi_knn(knn: Knn, labels: np.ndarray) -> np.ndarray:
    """LISI of every cell (``scib_metrics.lisi_knn``), perplexity ``floor(k / 3)``."""
    return 1 / simpson_index(knn, labels, perplexity=np.floor(knn.n_neighbors / 3))


def ilisi_knn(knn: Knn, batches: np.ndarray) -> float:
    """Median iLISI scaled to [0, 1] (``scib_metrics.ilisi_knn``)."""
    n_batches = np.unique(np.asarray(batches)).size
    return float((np.nanmedian(lisi_knn(knn, batches)) - 1) / (n_batches - 1))


def clisi_knn(knn: Knn, labels: np.ndarray) -> float:
    """Median cLISI scaled to [0, 1] (``scib_metrics.clisi_knn``)."""
    n_labels = np.unique(np.asarray(labels)).size
    return float((n_labels - np.nanmedian(lisi_knn(knn, labels))) / (n_labels - 1))


def graph_connectivity(knn: Knn, labels: np.ndarray) -> float:
    """Mean over labels of the largest connected component's share of the label's cells in
    the kNN graph restricted to the label (``scib_metrics.graph_connectivity``)."""
    labels = np.asarray(labels).ravel()
    graph = knn.graph_distances()
    shares = []
    for label in np.unique(labels):
        mask = labels == label
        _, comps = connected_components(graph[mask][:, mask], connection="strong")
        shares.append(np.bincount(comps).max() / comps.size)
    return float(np.mean(shares))
