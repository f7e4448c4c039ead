"""The contracts' ``scib`` block of ``metrics.json``: scib-metrics' metrics, computed in numpy.

The metrics are scib-metrics' (0.5.10), called with the arguments ``Benchmarker`` gives them,
but all except kBET and PCR comparison run as numpy ports (:mod:`mmint.metrics.scib_numpy`,
:mod:`mmint.metrics.scib_kmeans`) that agree with scib-metrics to 1e-6 (tested against it):
importing scib-metrics compiles umap's numba kernels and its JAX kernels are traced per shape,
tens of CPU seconds per process, more than the arithmetic. So:

- the kNN graph is computed once per embedding, exactly, with
  :class:`sklearn.neighbors.NearestNeighbors`, and subset to the k each metric uses
  (as ``Benchmarker.prepare``: 15 for graph connectivity, 50 for kBET, 90 for LISI);
- kBET (slow: tens of seconds of JIT compilation) can be switched off; it and
  ``pcr_comparison`` (only with a pre-integration embedding) still call scib-metrics, which is
  imported, with jax's persistent compilation cache on
  (:func:`mmint.metrics.jax_cache.enable_jax_cache`), only then;
- one batch is handled: the batch-correction metrics are then left out and
  ``batch_correction`` / ``total`` are ``None``.

Aggregates follow ``Benchmarker.get_results(min_max_scale=False)``: each category is the mean
of its metrics (skipping undefined ones), ``total = 0.6 * bio + 0.4 * batch``; no min-max
scaling, so the scores do not depend on which other embeddings are compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

import numpy as np

from mmint.metrics import scib_numpy as ports
from mmint.metrics.jax_cache import enable_jax_cache
from mmint.metrics.scib_kmeans import kmeans_labels
from mmint.metrics.subsample import stratified_subsample

#: k of the neighbour graph per metric, as in ``Benchmarker`` (capped at ``n_neighbors``).
K_GRAPH_CONNECTIVITY = 15
K_KBET = 50

BIO_WEIGHT = 0.6
BATCH_WEIGHT = 0.4

BIO_METRICS = ("isolated_labels", "kmeans_nmi", "kmeans_ari", "silhouette_label", "clisi_knn")
BATCH_METRICS = ("bras", "ilisi_knn", "kbet_per_label", "graph_connectivity", "pcr_comparison")


def exact_neighbors(z: np.ndarray, n_neighbors: int):
    """Exact Euclidean kNN of every cell (itself included) as scib-metrics ``NeighborsResults``.

    Usable as ``Benchmarker.prepare(neighbor_computer=exact_neighbors)``.

    Parameters
    ----------
    z
        Embedding of shape (n_cells, n_dims).
    n_neighbors
        Number of neighbours, the cell itself included; capped at ``n_cells``.

    Returns
    -------
    scib_metrics.nearest_neighbors.NeighborsResults
        Indices and distances of shape (n_cells, k), sorted by distance.
    """
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    z = np.asarray(z, dtype=np.float64)  # float64: reproducible distances
    k = min(int(n_neighbors), z.shape[0])
    distances, indices = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    return NeighborsResults(indices=indices, distances=distances)


def _float_or_none(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def _mean_or_none(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _as_embedding(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float32)
    if z.ndim != 2:
        raise ValueError(f"the embedding must be 2-dimensional, got shape {z.shape}")
    return z


def _batch_metrics(
    z: np.ndarray,
    labels: np.ndarray,
    batches: np.ndarray,
    neighbors: ports.Knn,
    kbet: bool,
    x_pre: np.ndarray | None,
) -> dict[str, float | None]:
    """The batch-correction metrics, called as ``Benchmarker`` calls them."""
    k = neighbors.n_neighbors
    out: dict[str, float | None] = {
        "bras": ports.bras(z, labels, batches),
        "ilisi_knn": _float_or_none(ports.ilisi_knn(neighbors, batches)),
    }
    if kbet:
        enable_jax_cache()
        import scib_metrics
        from scib_metrics.nearest_neighbors import NeighborsResults

        sub = neighbors.subset(min(K_KBET, k))
        graph = NeighborsResults(indices=sub.indices, distances=sub.distances)
        out["kbet_per_label"] = _float_or_none(scib_metrics.kbet_per_label(graph, batches, labels))
    out["graph_connectivity"] = _float_or_none(
        ports.graph_connectivity(neighbors.subset(min(K_GRAPH_CONNECTIVITY, k)), labels)
    )
    if x_pre is not None:
        enable_jax_cache()
        import scib_metrics

        out["pcr_comparison"] = _float_or_none(
            scib_metrics.pcr_comparison(np.asarray(x_pre), z, batches, categorical=True)
        )
    return out


def _protocol(k: int, kbet: bool, batch: bool, pcr: bool, seed: int) -> str:
    batch_part = (
        "batch correction: bras, ilisi_knn"
        + (", kbet_per_label" if kbet else "")
        + ", graph_connectivity"
        + (", pcr_comparison (batch as categorical covariate)" if pcr else "")
        if batch
        else "batch correction: none (one batch)"
    )
    return (
        f"scib-metrics {version('scib-metrics')} metrics (arguments as in Benchmarker), "
        "numpy ports equal to scib-metrics within 1e-6 except kBET and PCR comparison "
        "(scib-metrics itself); "
        "bio conservation: isolated_labels (ASW variant), kmeans_nmi and kmeans_ari "
        f"(scib-metrics' KMeans, K = number of labels, seed {seed}), silhouette_label, "
        f"clisi_knn; {batch_part}; exact Euclidean kNN (sklearn) with k = {k} for LISI, "
        f"{min(K_KBET, k)} for kBET, {min(K_GRAPH_CONNECTIVITY, k)} for graph connectivity; "
        f"kBET {'on' if kbet else 'off'}; no min-max scaling; each category is the mean of "
        "its metrics, total = 0.6 * bio + 0.4 * batch"
    )


def scib_scores(
    z: np.ndarray,
    labels: np.ndarray,
    batches: np.ndarray | None = None,
    kbet: bool = False,
    n_neighbors: int = 90,
    seed: int = 0,
    x_pre: np.ndarray | None = None,
    max_cells: int | None = None,
) -> dict[str, Any]:
    """scIB bio-conservation and batch-correction scores of one embedding.

    Parameters
    ----------
    z
        Integrated embedding of shape (n_cells, n_dims).
    labels
        Cell labels, shape (n_cells,); at least 2 distinct values (filter out unlabelled
        cells first).
    batches
        Batch of each cell, shape (n_cells,); ``None`` or a single value means one batch: no
        batch-correction metrics.
    kbet
        Compute ``kbet_per_label`` (slow).
    n_neighbors
        k of the neighbour graph (LISI); graph connectivity uses ``min(15, k)`` and kBET
        ``min(50, k)``. Capped at ``n_cells``.
    seed
        Seed of the KMeans behind ``kmeans_nmi`` / ``kmeans_ari`` (``Benchmarker`` uses 0).
    x_pre
        Pre-integration embedding (e.g. a PCA of the unintegrated data), shape
        (n_cells, n_pcs); needed for ``pcr_comparison``, left out when ``None``.
    max_cells
        Above this many cells every metric runs on a label-stratified subsample drawn with
        ``seed`` (:func:`mmint.metrics.subsample.stratified_subsample`); ``None``: all cells.

    Returns
    -------
    dict
        ``{"bio_conservation", "batch_correction", "total", "metrics", "protocol",
        "subsample"}``; ``subsample`` says which cells were scored (n_cells, how, seed);
        ``metrics`` maps snake_case names to floats (``None`` where scib-metrics returns nan,
        e.g. kBET when no label has two batches); ``batch_correction`` and ``total`` are
        ``None`` with one batch.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    z = _as_embedding(z)
    labels = np.asarray(labels).ravel()
    n = z.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} cells")
    n_labels = np.unique(labels).size
    if n_labels < 2:
        raise ValueError("scIB bio-conservation metrics need at least 2 distinct labels")
    if batches is None:
        batches = np.zeros(n, dtype=np.int64)
    batches = np.asarray(batches).ravel()
    if batches.shape[0] != n:
        raise ValueError(f"{batches.shape[0]} batches for {n} cells")
    if x_pre is not None and np.asarray(x_pre).shape[0] != n:
        raise ValueError(f"x_pre has {np.asarray(x_pre).shape[0]} rows for {n} cells")
    # the quadratic metrics (silhouettes, BRAS, the exact kNN graph) bound the cells
    keep, subsample = stratified_subsample(labels, max_cells, seed)
    if subsample["n_cells"] < n:
        z, labels, batches = z[keep], labels[keep], batches[keep]
        x_pre = None if x_pre is None else np.asarray(x_pre)[keep]
    multi_batch = np.unique(batches).size >= 2

    neighbors = ports.exact_knn(z, n_neighbors)

    kmeans_pred = kmeans_labels(z, n_labels, seed=seed)
    bio: dict[str, float | None] = {
        "isolated_labels": _float_or_none(ports.isolated_labels(z, labels, batches)),
        "kmeans_nmi": _float_or_none(
            normalized_mutual_info_score(labels, kmeans_pred, average_method="arithmetic")
        ),
        "kmeans_ari": _float_or_none(adjusted_rand_score(labels, kmeans_pred)),
        "silhouette_label": _float_or_none(ports.silhouette_label(z, labels)),
        "clisi_knn": _float_or_none(ports.clisi_knn(neighbors, labels)),
    }
    bio_score = _mean_or_none(list(bio.values()))
    metrics = dict(bio)
    batch_score = total = None
    if multi_batch:
        batch = _batch_metrics(z, labels, batches, neighbors, kbet, x_pre)
        metrics.update(batch)
        batch_score = _mean_or_none(list(batch.values()))
        if bio_score is not None and batch_score is not None:
            total = BIO_WEIGHT * bio_score + BATCH_WEIGHT * batch_score
    return {
        "bio_conservation": bio_score,
        "batch_correction": batch_score,
        "total": total,
        "metrics": metrics,
        "protocol": _protocol(
            neighbors.n_neighbors, kbet, multi_batch, multi_batch and x_pre is not None, seed
        ),
        "subsample": subsample,
    }


def modality_mixing(
    latents: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    kbet: bool = False,
    n_neighbors: int = 90,
    max_cells: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Batch-correction metrics with the modality as the batch: how well modalities mix.

    The per-modality latents of the same cells are stacked (in the mapping's order; each
    modality's rows are its cells, labels repeated), the modality name is the batch, and the
    batch-correction metrics of :func:`scib_scores` are computed on the stack: ``bras``,
    ``ilisi_knn``, ``graph_connectivity`` and, when ``kbet``, ``kbet_per_label``
    (``pcr_comparison`` is left out: there is no pre-integration embedding of the stack).

    Parameters
    ----------
    latents
        ``{modality: z}`` with at least two modalities, each of shape (n_cells, n_dims) with the
        same n_dims.
    labels
        Labels of the cells, shape (n_cells,); ``None`` treats all cells as one label (the
        label-stratified metrics then become global).
    kbet
        Compute ``kbet_per_label``.
    n_neighbors
        k of the neighbour graph, as in :func:`scib_scores`.
    max_cells
        Above this many cells (before stacking) the metrics run on a label-stratified
        subsample of the cells drawn with ``seed``, each kept cell in every modality.
    seed
        Seed of that subsample.

    Returns
    -------
    dict
        ``{metric: value, ..., "batch_correction": mean of the metrics, "subsample": which
        cells}``.
    """
    if len(latents) < 2:
        raise ValueError(f"modality mixing needs at least 2 modalities, got {list(latents)}")
    arrays = [_as_embedding(z) for z in latents.values()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"latents must have the same shape, got {sorted(shapes)}")
    n = arrays[0].shape[0]
    if labels is None:
        labels = np.zeros(n, dtype=np.int64)
    labels = np.asarray(labels).ravel()
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} cells")
    keep, subsample = stratified_subsample(labels, max_cells, seed)
    if subsample["n_cells"] < n:
        arrays, labels, n = [a[keep] for a in arrays], labels[keep], int(keep.size)
    z = np.concatenate(arrays, axis=0)
    modality = np.repeat(np.array(list(latents.keys()), dtype=object), n)
    labels = np.tile(labels, len(arrays))
    neighbors = ports.exact_knn(z, n_neighbors)
    out = _batch_metrics(z, labels, modality, neighbors, kbet, x_pre=None)
    out["batch_correction"] = _mean_or_none(list(out.values()))
    return {**out, "subsample": subsample}
