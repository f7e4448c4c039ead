"""Clustering agreement metrics: ARI, NMI, Hungarian accuracy, KMeans, Leiden, class-level ARI.

All functions are pure: arrays in, a float (or a small dict of floats) out. Labels and
predictions may be of any hashable dtype (ints, strings); they are compared by equality only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from mmint.metrics.leiden import (
    SCANPY_EXACT_BELOW,
    igraph_graph,
    igraph_leiden,
    scanpy_knn,
    umap_connectivities,
)

#: Leiden resolutions searched by :func:`leiden_best` (0.1, 0.2, ..., 2.0), as in scIB.
DEFAULT_RESOLUTIONS: tuple[float, ...] = tuple(
    float(r) for r in np.round(np.arange(0.1, 2.01, 0.1), 10)
)


def _check_pair(labels: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).ravel()
    pred = np.asarray(pred).ravel()
    if labels.shape != pred.shape:
        raise ValueError(f"labels and pred differ in length: {labels.shape[0]} vs {pred.shape[0]}")
    if labels.size == 0:
        raise ValueError("labels and pred are empty")
    return labels, pred


def ari(labels: np.ndarray, pred: np.ndarray) -> float:
    """Adjusted Rand index between true labels and predicted groups.

    Parameters
    ----------
    labels
        Array of shape (n_cells,) with the true labels.
    pred
        Array of shape (n_cells,) with the predicted groups.

    Returns
    -------
    float
        :func:`sklearn.metrics.adjusted_rand_score`; 1 for identical partitions, about 0 for
        random ones.
    """
    labels, pred = _check_pair(labels, pred)
    return float(adjusted_rand_score(labels, pred))


def nmi(labels: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mutual information between true labels and predicted groups.

    Uses the **arithmetic** mean of the two entropies as the normaliser
    (``average_method="arithmetic"``), as scIB and scib-metrics do.

    Parameters
    ----------
    labels
        Array of shape (n_cells,) with the true labels.
    pred
        Array of shape (n_cells,) with the predicted groups.

    Returns
    -------
    float
        NMI in [0, 1].
    """
    labels, pred = _check_pair(labels, pred)
    return float(normalized_mutual_info_score(labels, pred, average_method="arithmetic"))


def _hungarian_match(labels: np.ndarray, pred: np.ndarray):
    """Return (label classes, pred classes, contingency, matched rows, matched cols).

    The contingency table has predicted groups as rows and labels as columns; the assignment
    maximises the number of cells on matched (group, label) pairs. With unequal numbers of groups
    and labels, ``min(n_groups, n_labels)`` pairs are matched.
    """
    pred_classes, pred_codes = np.unique(pred, return_inverse=True)
    label_classes, label_codes = np.unique(labels, return_inverse=True)
    table = contingency_matrix(pred_codes, label_codes)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return label_classes, pred_classes, table, rows, cols


def hungarian_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy after the best one-to-one matching of predicted groups to labels.

    The matching maximises the number of correctly assigned cells (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment` on the group x label contingency table).
    The numbers of groups and labels may differ: cells of groups left unmatched (more groups
    than labels), and cells of labels left unmatched (more labels than groups), count as wrong.

    Parameters
    ----------
    labels
        Array of shape (n_cells,) with the true labels.
    pred
        Array of shape (n_cells,) with the predicted groups.

    Returns
    -------
    float
        Fraction of cells whose matched group label equals their true label, in [0, 1].
    """
    labels, pred = _check_pair(labels, pred)
    _, _, table, rows, cols = _hungarian_match(labels, pred)
    return float(table[rows, cols].sum() / labels.size)


def kmeans_labels(z: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """KMeans cluster assignment of an embedding.

    Parameters
    ----------
    z
        Array of shape (n_cells, n_dims).
    n_clusters
        Number of clusters K (the contracts use the number of distinct labels).
    seed
        ``random_state`` of :class:`sklearn.cluster.KMeans` (``n_init=10``, k-means++).

    Returns
    -------
    numpy.ndarray
        Integer array of shape (n_cells,) with cluster ids in ``[0, n_clusters)``.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be 2-dimensional, got shape {z.shape}")
    if not 1 <= n_clusters <= z.shape[0]:
        raise ValueError(f"n_clusters must be in [1, n_cells={z.shape[0]}], got {n_clusters}")
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
    return km.fit_predict(z).astype(np.int64)


def leiden_best(
    z: np.ndarray,
    labels: np.ndarray,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
    n_neighbors: int = 15,
    seed: int = 0,
) -> dict[str, float]:
    """Leiden clustering at several resolutions, keeping the one with the best NMI (as scIB).

    The neighbour graph is computed once as :func:`scanpy.pp.neighbors` computes it on ``z``
    (``use_rep="X"``, UMAP connectivities; exact neighbours below 8,192 cells, reproduced in
    numpy by :mod:`mmint.metrics.leiden`; from 8,192 cells scanpy itself, whose neighbours are
    then approximate), then Leiden runs as :func:`scanpy.tl.leiden` with ``flavor="igraph"``,
    ``n_iterations=2``, ``directed=False`` and ``random_state=seed`` for each resolution. Ties
    in NMI keep the lowest resolution.

    Parameters
    ----------
    z
        Embedding of shape (n_cells, n_dims).
    labels
        Array of shape (n_cells,) with the true labels.
    resolutions
        Leiden resolutions to try; default 0.1, 0.2, ..., 2.0.
    n_neighbors
        Neighbours of the kNN graph (capped at ``n_cells - 1``).
    seed
        Seed of the neighbour search and of Leiden.

    Returns
    -------
    dict
        ``{"ari", "nmi", "resolution", "n_clusters"}`` of the best-NMI resolution
        (``n_clusters`` is an int).
    """
    z = np.asarray(z, dtype=np.float32)
    labels = np.asarray(labels).ravel()
    if z.ndim != 2 or z.shape[0] != labels.shape[0]:
        raise ValueError(f"z of shape {z.shape} does not match {labels.shape[0]} labels")
    if len(resolutions) == 0:
        raise ValueError("resolutions is empty")
    if z.shape[0] < 3:
        raise ValueError(f"leiden_best needs at least 3 cells, got {z.shape[0]}")
    k = min(n_neighbors, z.shape[0] - 1)
    if z.shape[0] < SCANPY_EXACT_BELOW:
        graph = igraph_graph(umap_connectivities(*scanpy_knn(z, k)))
    else:
        import anndata as ad
        import scanpy as sc

        adata = ad.AnnData(z)
        sc.pp.neighbors(adata, n_neighbors=k, use_rep="X", random_state=seed)
        graph = igraph_graph(adata.obsp["connectivities"])
    best: dict[str, float] | None = None
    for resolution in resolutions:
        pred = igraph_leiden(graph, resolution, seed)
        score = nmi(labels, pred)
        if best is None or score > best["nmi"]:
            best = {
                "ari": ari(labels, pred),
                "nmi": score,
                "resolution": float(resolution),
                "n_clusters": int(np.unique(pred).size),
            }
    assert best is not None
    return best


def leiden_labels(graph, resolution: float, seed: int = 0) -> np.ndarray:
    """Leiden clusters (as strings) of a neighbour graph at one resolution.

    Parameters
    ----------
    graph
        An AnnData with a scanpy neighbour graph (``obsp['connectivities']``), or a square
        (sparse) connectivity matrix.
    resolution
        Leiden resolution.
    seed
        Seed of Leiden.

    Returns
    -------
    np.ndarray
        Cluster name per cell, as :func:`scanpy.tl.leiden` with ``flavor="igraph"``,
        ``n_iterations=2``, undirected (:func:`mmint.metrics.leiden.igraph_leiden`).
    """
    adjacency = graph.obsp["connectivities"] if hasattr(graph, "obsp") else graph
    return igraph_leiden(igraph_graph(adjacency), resolution, seed)


def class_level_ari(
    train_labels: np.ndarray,
    train_pred: np.ndarray,
    test_labels_fine: np.ndarray,
    test_pred: np.ndarray,
    fine_to_class: Mapping,
) -> float:
    """ARI at the level of label classes, with groups matched to fine labels on training cells.

    The contracts' ``ari_class``. Steps:

    1. On the **training** cells, each predicted group is matched one-to-one to a fine label by
       the Hungarian algorithm on the group x fine-label contingency table
       (:func:`scipy.optimize.linear_sum_assignment`, maximising matched cells).
    2. Groups left unmatched (more groups than fine labels) get the fine label most frequent
       among their training cells (ties: the first in sorted label order).
    3. Each group's fine label is replaced by its class (``fine_to_class``). Groups that never
       occur among the training cells get a class of their own (one new class per group), so
       they never count as agreeing with a true class.
    4. The ARI between the true classes of the scored cells (``fine_to_class`` of
       ``test_labels_fine``) and their groups' classes is returned.

    Parameters
    ----------
    train_labels
        Fine labels of the training cells, shape (n_train,). Every value must be a key of
        ``fine_to_class`` (filter out unlabelled cells first).
    train_pred
        Predicted groups of the training cells, shape (n_train,).
    test_labels_fine
        Fine labels of the scored cells, shape (n_test,); keys of ``fine_to_class``.
    test_pred
        Predicted groups of the scored cells, shape (n_test,).
    fine_to_class
        Mapping fine label -> class.

    Returns
    -------
    float
        The class-level ARI.
    """
    train_labels, train_pred = _check_pair(train_labels, train_pred)
    test_labels_fine, test_pred = _check_pair(test_labels_fine, test_pred)
    missing = sorted(
        {str(v) for v in np.unique(np.concatenate([train_labels, test_labels_fine]))}
        - {str(k) for k in fine_to_class}
    )
    if missing:
        raise ValueError(f"labels missing from fine_to_class: {missing[:5]}")
    lookup = {str(k): v for k, v in fine_to_class.items()}

    label_classes, pred_classes, table, rows, cols = _hungarian_match(train_labels, train_pred)
    group_to_fine = {pred_classes[r]: label_classes[c] for r, c in zip(rows, cols, strict=True)}
    for r, group in enumerate(pred_classes):
        if group not in group_to_fine:
            group_to_fine[group] = label_classes[int(np.argmax(table[r]))]

    class_codes: dict = {}

    def code(cls) -> int:
        return class_codes.setdefault(cls, len(class_codes))

    fine_values, fine_inverse = np.unique(test_labels_fine, return_inverse=True)
    true_class = np.array([code(lookup[str(f)]) for f in fine_values], dtype=np.int64)
    true_class = true_class[fine_inverse]
    group_values, group_inverse = np.unique(test_pred, return_inverse=True)
    group_class = np.empty(group_values.shape[0], dtype=np.int64)
    n_unseen = 0
    for i, group in enumerate(group_values):
        if group in group_to_fine:
            group_class[i] = code(lookup[str(group_to_fine[group])])
        else:  # never seen among training cells: a class of its own
            n_unseen += 1
            group_class[i] = -n_unseen
    pred_class = group_class[group_inverse]
    return float(adjusted_rand_score(true_class, pred_class))
