"""mmint.metrics.leiden against scanpy itself: the same neighbour connectivities
(``scanpy.pp.neighbors``, umap's fuzzy simplicial set) and the same Leiden clusters
(``scanpy.tl.leiden(flavor="igraph")``) on seeded toys.

The connectivities agree to ``CONN_TOL``, not bit for bit: umap's numba ``expf`` differs from
numpy's correctly rounded float32 ``exp`` by one unit in the last place on about 1 value in
10,000, which can move a cell's bisected kernel width by a few 1e-6 relative; the Leiden
clusters, the metric's input, are compared exactly."""

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from mmint.metrics import leiden as ld
from mmint.metrics.clustering import leiden_best, leiden_labels, nmi

CONN_TOL = 2e-6


def _toy(seed: int, n: int = 500, dims: int = 6, k: int = 6, spread: float = 2.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    z = rng.normal(0, spread, (k, dims))[labels] + rng.normal(size=(n, dims))
    return z.astype(np.float32), labels


def _scanpy(z: np.ndarray, n_neighbors: int = 15) -> ad.AnnData:
    adata = ad.AnnData(z)
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep="X", random_state=0)
    return adata


@pytest.mark.parametrize(
    ("seed", "n", "spread", "offset"),
    [(0, 500, 2.0, 0.0), (1, 300, 0.5, 0.0), (2, 60, 0.0, 0.0), (3, 60, 1.0, 30.0)],
)
def test_connectivities_equal_scanpy(seed, n, spread, offset):
    """offset: far from the origin, sklearn's float32 self-distances are not exactly 0."""
    z, _ = _toy(seed, n=n, spread=spread)
    z = z + np.float32(offset)
    ref = _scanpy(z).obsp["connectivities"]
    ours = ld.umap_connectivities(*ld.scanpy_knn(z, 15))
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours.indptr, ref.indptr)  # the same edges
    np.testing.assert_array_equal(ours.indices, ref.indices)
    np.testing.assert_allclose(ours.data, ref.data, rtol=0, atol=CONN_TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_leiden_equals_scanpy(seed):
    z, _ = _toy(seed, spread=1.0)
    adata = _scanpy(z)
    ours = ld.igraph_graph(ld.umap_connectivities(*ld.scanpy_knn(z, 15)))
    for resolution in (0.3, 1.0, 1.7):
        sc.tl.leiden(
            adata,
            resolution=resolution,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=seed,
            key_added="ref",
        )
        ref = np.asarray(adata.obs["ref"].astype(str))
        np.testing.assert_array_equal(leiden_labels(adata, resolution, seed), ref)
        conn = adata.obsp["connectivities"]
        np.testing.assert_array_equal(leiden_labels(conn, resolution, seed), ref)
        np.testing.assert_array_equal(ld.igraph_leiden(ours, resolution, seed), ref)


def test_leiden_best_equals_scanpy_search():
    """leiden_best against the same search written with scanpy (best NMI, lowest resolution
    on ties)."""
    z, labels = _toy(3, spread=1.0)
    resolutions = (0.2, 0.6, 1.0, 1.4)
    adata = _scanpy(z, 10)
    scores = []
    for r in resolutions:
        sc.tl.leiden(
            adata, resolution=r, flavor="igraph", n_iterations=2, directed=False, random_state=0
        )
        scores.append(nmi(labels, adata.obs["leiden"].to_numpy()))
    best = int(np.argmax(scores))
    out = leiden_best(z, labels, resolutions=resolutions, n_neighbors=10, seed=0)
    assert out["resolution"] == resolutions[best]
    assert out["nmi"] == pytest.approx(scores[best], abs=1e-12)


def test_smooth_knn_dist_hand_case():
    """Two neighbours at distances 1 and 2 (self at 0), k = 3: rho = 1 and sigma solves
    1 + exp(-(2 - 1) / sigma) = log2(3)."""
    d = np.array([[0.0, 1.0, 2.0]], dtype=np.float32)
    sigma, rho = ld.smooth_knn_dist(d, 3.0)
    assert rho[0] == 1.0
    assert sigma[0] == pytest.approx(-1 / np.log(np.log2(3) - 1), rel=1e-4)


def test_large_sets_use_scanpy_neighbours():
    with pytest.raises(ValueError, match="approximate"):
        ld.scanpy_knn(np.zeros((ld.SCANPY_EXACT_BELOW, 2), dtype=np.float32), 15)


def test_graph_has_each_stored_entry_as_an_edge():
    adjacency = sp.csr_matrix(np.array([[0, 0.5, 0], [0.5, 0, 0.2], [0, 0.2, 0]]))
    g = ld.igraph_graph(adjacency)
    assert g.ecount() == 4 and sorted(g.es["weight"]) == [0.2, 0.2, 0.5, 0.5]
