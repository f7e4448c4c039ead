"""The numpy ports of :mod:`mmint.metrics.scib_numpy` against scib-metrics itself.

Each port runs next to the scib-metrics function it replaces, on seeded toys (clusters, batch
shifts, an isolated label, a singleton label), and must agree to ``TOL`` (scib-metrics
computes in float32, the ports in float64).
"""

import numpy as np
import pytest

from mmint.metrics import scib_numpy as ports

scib_metrics = pytest.importorskip("scib_metrics")
from scib_metrics.nearest_neighbors import NeighborsResults  # noqa: E402

TOL = 1e-6


def _toy(seed: int, n: int = 400, dims: int = 8, n_labels: int = 5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels, n).astype(str)
    batches = rng.choice(np.array(["b0", "b1", "b2"]), n)
    batches[labels == "0"] = "b1"  # an isolated label
    labels[0] = "solo"  # a singleton label: undefined silhouette
    centres = {lab: rng.normal(0, 2.5, dims) for lab in np.unique(labels)}
    shift = {b: rng.normal(0, 0.8, dims) for b in np.unique(batches)}
    z = np.stack([centres[a] + shift[b] for a, b in zip(labels, batches, strict=True)])
    return (z + rng.normal(0, 1.0, z.shape)).astype(np.float32), labels, batches


SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_silhouettes_equal_scib_metrics(seed):
    z, labels, batches = _toy(seed)
    assert ports.silhouette_label(z, labels) == pytest.approx(
        float(scib_metrics.silhouette_label(z, labels)), abs=TOL
    )
    assert ports.isolated_labels(z, labels, batches) == pytest.approx(
        float(scib_metrics.isolated_labels(z, labels, batches)), abs=TOL
    )
    assert ports.bras(z, labels, batches) == pytest.approx(
        float(scib_metrics.bras(z, labels, batches)), abs=TOL
    )
    for between in ("nearest", "mean_other"):
        for metric in ("euclidean", "cosine"):
            ours = ports.silhouette_samples(z, batches, metric=metric, between=between)
            ref = scib_metrics.utils.silhouette_samples(
                z, batches, metric=metric, between_cluster_distances=between
            )
            np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_knn_metrics_equal_scib_metrics(seed):
    z, labels, batches = _toy(seed)
    knn = ports.exact_knn(z, 90)
    ref = NeighborsResults(indices=knn.indices, distances=knn.distances)
    assert ports.ilisi_knn(knn, batches) == pytest.approx(
        float(scib_metrics.ilisi_knn(ref, batches)), abs=TOL
    )
    assert ports.clisi_knn(knn, labels) == pytest.approx(
        float(scib_metrics.clisi_knn(ref, labels)), abs=TOL
    )
    np.testing.assert_allclose(
        ports.lisi_knn(knn, batches), scib_metrics.lisi_knn(ref, batches), rtol=1e-5
    )
    small = knn.subset(15)
    assert ports.graph_connectivity(small, labels) == pytest.approx(
        float(scib_metrics.graph_connectivity(ref.subset_neighbors(15), labels)), abs=TOL
    )


def test_bras_without_a_label_spanning_batches_is_none():
    z, labels, _ = _toy(0)
    assert ports.bras(z, labels, np.full(labels.size, "b0")) is None


def test_silhouette_of_two_far_clusters_is_one():
    """Hand computation: two tight, far clusters give silhouettes close to 1."""
    z = np.array([[0.0, 0.0], [0.0, 1.0], [100.0, 0.0], [100.0, 1.0]])
    sil = ports.silhouette_samples(z, np.array([0, 0, 1, 1]))
    # a = 1 (the other member), b = mean of sqrt(100^2) and sqrt(100^2 + 1)
    b = (100.0 + np.sqrt(100.0**2 + 1)) / 2
    np.testing.assert_allclose(sil, (b - 1) / b)
