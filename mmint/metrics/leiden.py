"""scanpy's neighbour graph and Leiden clustering, without scanpy's umap/numba import.

``scanpy.pp.neighbors`` (below 8,192 cells: exact Euclidean kNN by
:class:`sklearn.neighbors.KNeighborsTransformer`) followed by ``scanpy.tl.leiden(flavor="igraph")``
imports umap and pynndescent, whose numba kernels compile at import: tens of CPU seconds per
process, more than clustering a few thousand cells. Here the same steps run in numpy:

- :func:`scanpy_knn`: the kNN as scanpy computes it (the same sklearn transformer);
- :func:`umap_connectivities`: umap's ``fuzzy_simplicial_set`` (``smooth_knn_dist`` and
  ``compute_membership_strengths``, in float32 as umap's numba code, vectorised over cells;
  the fuzzy union with the same scipy operations);
- :func:`igraph_leiden`: the graph built as ``scanpy._utils.get_igraph_from_adjacency`` and
  ``igraph.Graph.community_leiden`` with scanpy's arguments and random number generator.

``tests/metrics/test_leiden.py`` checks connectivities and clusters against scanpy itself.
From 8,192 cells on, scanpy's neighbours are approximate (pynndescent): callers use scanpy then.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

#: from this many cells on scanpy's neighbours are pynndescent's, not exact
SCANPY_EXACT_BELOW = 8192
_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3
_FLOATMAX = np.finfo(np.float32).max


def scanpy_knn(z: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances (self first) of ``scanpy.pp.neighbors(use_rep="X")`` below
    :data:`SCANPY_EXACT_BELOW` cells, shape (n_cells, n_neighbors)."""
    from sklearn.neighbors import KNeighborsTransformer

    z = np.asarray(z)
    if z.shape[0] >= SCANPY_EXACT_BELOW:
        raise ValueError(f"scanpy's neighbours are approximate from {SCANPY_EXACT_BELOW} cells")
    k = min(n_neighbors, z.shape[0] - 1)
    d = KNeighborsTransformer(algorithm="brute", n_neighbors=k, metric="euclidean")
    d = d.fit_transform(z)
    nnz = d.getnnz(axis=1)
    if not np.all(nnz == nnz[0]):
        raise ValueError("the kNN graph has rows of different lengths")
    indices = d.indices.reshape(z.shape[0], nnz[0])
    distances = d.data.reshape(z.shape[0], nnz[0])
    if not (indices[:, 0] == np.arange(z.shape[0])).any():  # scanpy adds a self column then
        indices = np.hstack([np.arange(z.shape[0])[:, None], indices])
        distances = np.hstack([np.zeros(z.shape[0])[:, None], distances])
    else:
        # sklearn's float32 self-distances are not exactly 0 (about 1e-7); scanpy zeroes the
        # diagonal of its distance matrix in place, which its kNN distances are a view of,
        # before the connectivities: without this, rho is the self-distance
        distances = distances.copy()
        distances[indices == np.arange(z.shape[0])[:, None]] = 0.0
    return indices[:, :n_neighbors], distances[:, :n_neighbors]


def _exp32(x: np.ndarray) -> np.ndarray:
    """float32 ``exp`` rounded from float64 (as libm's ``expf`` that numba calls)."""
    return np.exp(x.astype(np.float64)).astype(np.float32)


def _sequential_mean32(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """numba's ``np.mean`` of a float32 array: a sequential float32 sum over the count."""
    flat = x.ravel() if axis is None else x
    total = np.cumsum(flat, axis=0 if axis is None else axis, dtype=np.float32)
    last = total[-1] if axis is None else total[:, -1]
    return last.astype(np.float64) / (flat.size if axis is None else x.shape[1])


def smooth_knn_dist(distances: np.ndarray, k: float, n_iter: int = 64):
    """``umap.umap_.smooth_knn_dist`` (``local_connectivity=1``, ``bandwidth=1``): per cell,
    the distance to its nearest neighbour (``rho``) and the kernel width (``sigma``) bisected
    so that the memberships sum to ``log2(k)``. Returns ``(sigmas, rhos)``, float32."""
    n, width = distances.shape
    target = np.log2(k)
    positive = distances > 0.0
    has = positive.any(axis=1)
    first = np.argmax(positive, axis=1)
    rho = np.where(has, distances[np.arange(n), first], np.float32(0.0)).astype(np.float32)
    lo = np.zeros(n, np.float32)
    hi = np.full(n, _FLOATMAX, np.float32)
    mid = np.ones(n, np.float32)
    active = np.ones(n, dtype=bool)
    for _ in range(n_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        psum = np.zeros(rows.size, np.float32)
        for j in range(1, width):
            d = distances[rows, j] - rho[rows]
            pos = d > 0
            term = np.ones(rows.size, np.float32)
            term[pos] = _exp32(-(d[pos] / mid[rows][pos]))
            psum = psum + term
        diff = psum.astype(np.float64) - target
        done = np.abs(diff) < _SMOOTH_K_TOLERANCE
        above = ~done & (diff > 0)
        below = ~done & ~above
        r = rows[above]
        hi[r] = mid[r]
        mid[r] = (lo[r] + hi[r]) / np.float32(2.0)
        r = rows[below]
        lo[r] = mid[r]
        unbounded = hi[r] >= _FLOATMAX
        mid[r[unbounded]] = mid[r[unbounded]] * np.float32(2.0)
        b = r[~unbounded]
        mid[b] = (lo[b] + hi[b]) / np.float32(2.0)
        active[rows[done]] = False
    # the last iteration without convergence still updated mid: umap keeps that value too
    result = mid.copy()
    floor_row = _MIN_K_DIST_SCALE * _sequential_mean32(distances, axis=1)
    floor_all = _MIN_K_DIST_SCALE * _sequential_mean32(distances)
    floor = np.where(rho > 0.0, floor_row, floor_all)
    low = result < floor
    result[low] = floor[low].astype(np.float32)
    return result, rho


def umap_connectivities(indices: np.ndarray, distances: np.ndarray) -> sp.csr_matrix:
    """umap's fuzzy simplicial set of a kNN graph (what scanpy stores as ``connectivities``).

    Parameters
    ----------
    indices, distances
        kNN of every cell, self first, shape (n_cells, k).

    Returns
    -------
    scipy.sparse.csr_matrix
        Symmetric float32 (n_cells, n_cells) membership strengths (fuzzy union).
    """
    n, k = indices.shape
    dists = np.ascontiguousarray(distances, dtype=np.float32)
    sigmas, rhos = smooth_knn_dist(dists, float(k))
    delta = dists - rhos[:, None]
    vals = np.ones((n, k), np.float32)
    spread = (delta > 0.0) & (sigmas[:, None] != 0.0)
    vals[spread] = _exp32(-(delta / sigmas[:, None])[spread])
    vals[indices == np.arange(n)[:, None]] = 0.0
    rows = np.repeat(np.arange(n, dtype=np.int32), k)
    result = sp.coo_matrix((vals.ravel(), (rows, indices.ravel().astype(np.int32))), shape=(n, n))
    result.eliminate_zeros()
    transpose = result.transpose()
    prod = result.multiply(transpose)
    result = 1.0 * (result + transpose - prod) + (1.0 - 1.0) * prod
    result.eliminate_zeros()
    return result.tocsr()


class _IgraphRandom:
    """scanpy's random number generator for igraph (a seeded ``RandomState``)."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.RandomState(seed)

    def getrandbits(self, k: int) -> int:
        return self._rng.tomaxint() & ((1 << k) - 1)

    def randint(self, a: int, b: int) -> int:
        return self._rng.randint(a, b + 1)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._rng, "normal" if attr == "gauss" else attr)


@contextmanager
def _igraph_seed(seed: int) -> Iterator[None]:
    import igraph

    igraph.set_random_number_generator(_IgraphRandom(seed))
    try:
        yield
    finally:
        igraph.set_random_number_generator(random)


def igraph_graph(adjacency: Any):
    """Undirected weighted igraph graph of an adjacency matrix, built as scanpy builds it
    (one edge per stored nonzero, so each undirected pair twice)."""
    import igraph

    sources, targets = adjacency.nonzero()
    weights = np.asarray(adjacency[sources, targets]).ravel()
    g = igraph.Graph(directed=False)
    g.add_vertices(adjacency.shape[0])
    g.add_edges(list(zip(sources, targets, strict=True)))
    g.es["weight"] = weights
    return g


def igraph_leiden(graph: Any, resolution: float, seed: int = 0) -> np.ndarray:
    """``scanpy.tl.leiden(flavor="igraph", n_iterations=2, directed=False)`` on an igraph
    graph from :func:`igraph_graph`: cluster number (as a string) per cell."""
    with _igraph_seed(seed):
        part = graph.community_leiden(
            weights="weight",
            resolution=float(resolution),
            objective_function="modularity",
            n_iterations=2,
        )
    return np.asarray(part.membership).astype(str)
