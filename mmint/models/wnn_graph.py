"""The weighted-nearest-neighbour graph (Hao et al. 2021) with exact neighbour search.

The same steps as :func:`muon.pp.neighbors` (muon 0.1.9), which follows Seurat v4's
``FindMultiModalNeighbors``; muon searches neighbours approximately with NN-descent and a
custom numba metric that recompiles on every call (about 20 s each on these CPUs), which is
why mmint uses this exact version by default. The suite ``wnn_graph`` (``mmint benchmark suite=wnn_graph``) compares the two.

For each modality ``m`` with coordinates ``X_m`` (cells x dims):

1. ``k - 1`` nearest other cells (scanpy's convention for ``n_neighbors = k``); ``d1`` the
   distance to the nearest one.
2. Bandwidth ``sigma``: mean distance to the ``n_bandwidth`` cells that share most neighbours
   (largest Jaccard index below 1, ties to the farther cell).
3. Within- and cross-modality predictions of a cell's ``X_m``: the mean of ``X_m`` over its
   neighbours in ``m`` and in each other modality; affinity
   ``theta = exp(-max(|x - r| - d1, 0) / (sigma - d1))``.
4. Ratio ``theta_self / (max theta_cross + eps)``; modality weights = softmax of the ratios
   over modalities (per cell: in [0, 1], summing to 1).
5. Candidates: the union of each modality's ``n_multineighbors`` nearest cells; affinity of a
   candidate ``sum_m w_m exp(-d_m / sigma_m)``, distance ``sqrt((1 - affinity) / 2)``; the
   ``k + 1`` closest are kept and turned into UMAP connectivities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import softmax
from sklearn.neighbors import NearestNeighbors

from mmint.errors import InputError


@dataclass
class WNNGraph:
    """A WNN graph: ``connectivities`` and ``distances`` (n x n, CSR), ``weights``
    (``{modality: weight per cell}``) and ``sigmas`` (``{modality: bandwidth per cell}``)."""

    connectivities: sp.csr_matrix
    distances: sp.csr_matrix
    weights: dict[str, np.ndarray]
    sigmas: dict[str, np.ndarray]


def _knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each cell's ``k`` nearest other cells (exact)."""
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    # drop the cell itself (not always column 0 when cells coincide)
    keep = idx != np.arange(len(x))[:, None]
    rows = [i[k_][:k] for i, k_ in zip(idx, keep, strict=True)]
    drows = [d[k_][:k] for d, k_ in zip(dist, keep, strict=True)]
    return np.asarray(rows), np.asarray(drows)


def _bandwidth(x: np.ndarray, nbrs: np.ndarray, n_bandwidth: int) -> np.ndarray:
    """Mean distance to the ``n_bandwidth`` cells sharing most neighbours (muon's rule: the
    smallest ``(1 - Jaccard) n + (bbox - d) / bbox``, so ties go to the farther cell; cells
    with the same neighbours as the cell (Jaccard 1) and the cell itself are left out)."""
    n, k = nbrs.shape
    adj = sp.csr_matrix((np.ones(n * k), nbrs.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    shared = (adj @ adj.T).tocsr()
    bbox = max(float(np.linalg.norm(np.ptp(x, axis=0))), 1e-12)
    sigma = np.empty(n)
    for i in range(n):
        d = np.linalg.norm(x - x[i], axis=1)
        score = n + (bbox - d) / bbox  # Jaccard 0
        row = slice(shared.indptr[i], shared.indptr[i + 1])
        cols, common = shared.indices[row], shared.data[row]
        jaccard = common / (2 * k - common)
        score[cols] = (1.0 - jaccard) * n + (bbox - d[cols]) / bbox
        score[cols[jaccard >= 1.0]] = np.inf
        score[i] = np.inf
        chosen = np.argsort(score, kind="stable")[:n_bandwidth]
        sigma[i] = d[chosen].mean()
    return sigma


def wnn_graph(
    spaces: dict[str, np.ndarray],
    n_neighbors: int = 20,
    n_bandwidth_neighbors: int = 20,
    n_multineighbors: int = 200,
    eps: float = 1e-4,
    seed: int = 0,
) -> WNNGraph:
    """The WNN graph of cells given each modality's coordinates (same cells, same order).

    Parameters
    ----------
    spaces
        ``{modality: (n_cells, dims)}`` coordinates (PCA / LSI, L2-normalised per cell).
    n_neighbors
        ``k``: neighbours per modality (``k - 1`` other cells) and of the WNN graph.
    n_bandwidth_neighbors
        Cells averaged for each cell's kernel bandwidth.
    n_multineighbors
        Candidate neighbours per modality.
    eps
        Added to the cross-modality affinity in the ratio.
    seed
        Seed of the UMAP connectivity computation (not random in practice).

    Returns
    -------
    WNNGraph
    """
    from umap.umap_ import fuzzy_simplicial_set

    mods = list(spaces)
    n = len(next(iter(spaces.values())))
    if n < 4:
        raise InputError(f"a WNN graph needs at least 4 cells, got {n}", "data", "use more cells")
    k = max(2, min(n_neighbors, n - 1))
    x = {m: np.asarray(z, dtype=np.float64) for m, z in spaces.items()}
    nbrs, nn1, sigma = {}, {}, {}
    for m in mods:
        nbrs[m], dist = _knn(x[m], k - 1)
        nn1[m] = dist[:, 0]
        sigma[m] = _bandwidth(x[m], nbrs[m], min(n_bandwidth_neighbors, n - 1))
    ratios = np.empty((n, len(mods)))
    for a, m in enumerate(mods):
        width = np.maximum(sigma[m] - nn1[m], 1e-12)

        def theta(other: str, m: str = m, width: np.ndarray = width) -> np.ndarray:
            pred = x[m][nbrs[other]].mean(axis=1)
            gap = np.linalg.norm(x[m] - pred, axis=1) - nn1[m]
            return np.exp(-np.maximum(gap, 0.0) / width)

        cross = np.max([theta(o) for o in mods if o != m], axis=0) if len(mods) > 1 else 0.0
        ratios[:, a] = theta(m) / (cross + eps)
    weights = softmax(ratios, axis=1)
    # candidates: union of each modality's n_multineighbors nearest cells
    n_multi = max(1, min(n_multineighbors, n - 1))
    cand = np.unique(
        np.concatenate(
            [
                np.stack([np.repeat(np.arange(n), n_multi), _knn(x[m], n_multi)[0].ravel()])
                for m in mods
            ],
            axis=1,
        ),
        axis=1,
    )
    i, j = cand
    affinity = np.zeros(len(i))
    for start in range(0, len(i), 2**18):  # chunks keep the pair differences small
        ci, cj = i[start : start + 2**18], j[start : start + 2**18]
        for a, m in enumerate(mods):
            d = np.linalg.norm(x[m][ci] - x[m][cj], axis=1)
            affinity[start : start + len(ci)] += weights[ci, a] * np.exp(
                -d / np.maximum(sigma[m][ci], 1e-12)
            )
    dist = np.sqrt(np.maximum(0.5 * (1.0 - affinity), 0.0))
    keep = min(k + 1, n - 1)
    knn_idx = np.empty((n, keep), dtype=np.int64)
    knn_dist = np.empty((n, keep))
    starts = np.searchsorted(i, np.arange(n + 1))
    for c in range(n):
        row = slice(starts[c], starts[c + 1])
        order = np.argsort(dist[row], kind="stable")[:keep]
        knn_idx[c], knn_dist[c] = j[row][order], dist[row][order]
    distances = sp.csr_matrix(
        (knn_dist.ravel(), knn_idx.ravel(), np.arange(0, n * keep + 1, keep)), shape=(n, n)
    )
    conn, _, _ = fuzzy_simplicial_set(
        sp.coo_matrix((n, 1)),
        keep,
        np.random.RandomState(seed),
        None,
        knn_indices=knn_idx,
        knn_dists=knn_dist,
    )
    return WNNGraph(
        sp.csr_matrix(conn), distances, {m: weights[:, a] for a, m in enumerate(mods)}, sigma
    )


def muon_wnn_graph(
    spaces: dict[str, np.ndarray],
    n_neighbors: int = 20,
    n_bandwidth_neighbors: int = 20,
    n_multineighbors: int = 200,
    eps: float = 1e-4,
    seed: int = 0,
) -> WNNGraph:
    """The same graph through :func:`muon.pp.neighbors` (per-modality graphs from
    :func:`scanpy.pp.neighbors` on the given coordinates); arguments as :func:`wnn_graph`."""
    import anndata as ad
    import mudata as md
    import pandas as pd
    import scanpy as sc

    from mmint.models.optional import require

    mu = require("muon", "wnn")
    md.set_options(pull_on_update=False)
    n = len(next(iter(spaces.values())))
    k = max(2, min(n_neighbors, n - 1))
    names = pd.Index([f"c{i}" for i in range(n)])
    mods = {}
    for m, z in spaces.items():
        a = ad.AnnData(np.zeros((n, 0), np.float32), obs=pd.DataFrame(index=names))
        a.obsm["X_space"] = np.asarray(z, dtype=np.float32)
        sc.pp.neighbors(a, n_neighbors=k, use_rep="X_space", random_state=seed)
        mods[m] = a
    mdata = md.MuData(mods)
    mu.pp.neighbors(
        mdata,
        n_neighbors=k,
        n_bandwidth_neighbors=min(n_bandwidth_neighbors, n - 1),
        n_multineighbors=min(n_multineighbors, n - 1),
        eps=eps,
        random_state=seed,
    )
    order = mdata.obs_names.get_indexer(names)
    return WNNGraph(
        sp.csr_matrix(mdata.obsp["connectivities"])[order][:, order],
        sp.csr_matrix(mdata.obsp["distances"])[order][:, order],
        {m: np.asarray(mdata.obs[f"{m}:mod_weight"], dtype=np.float64)[order] for m in spaces},
        {},
    )
