"""Pure metric functions: arrays in, a float (or a small dict) out.

- :mod:`~mmint.metrics.clustering`: ARI, NMI, Hungarian accuracy, KMeans, best-NMI Leiden,
  class-level ARI;
- :mod:`~mmint.metrics.prediction`: R2 (uniform / variance-weighted, degenerate features
  excluded), per-cell Pearson and AUROC, chunked for large sparse matrices;
- :mod:`~mmint.metrics.alignment`: FOSCTTM and latent distance of paired latents;
- :mod:`~mmint.metrics.scib`: the scIB block (bio conservation, batch correction,
  modality mixing), from the numpy ports of scib-metrics in
  :mod:`~mmint.metrics.scib_numpy` and :mod:`~mmint.metrics.scib_kmeans`;
- :mod:`~mmint.metrics.subsample`: the seeded, label-stratified subsample the scIB metrics use
  above ``eval.scib_max_cells`` cells;
- :mod:`~mmint.metrics.transfer`: label-transfer accuracy and macro F1.

scib-metrics (jax, umap, numba) is imported only for kBET and PCR comparison.
"""

from mmint.metrics.alignment import foscttm, latent_distance
from mmint.metrics.clustering import (
    DEFAULT_RESOLUTIONS,
    ari,
    class_level_ari,
    hungarian_accuracy,
    kmeans_labels,
    leiden_best,
    nmi,
)
from mmint.metrics.prediction import (
    VARIANCE_EPS,
    PredictionAccumulator,
    accumulate,
    auroc,
    degenerate_features,
    iter_row_chunks,
    pearson_per_cell,
    r2,
)
from mmint.metrics.scib import exact_neighbors, modality_mixing, scib_scores
from mmint.metrics.subsample import SCIB_MAX_CELLS, stratified_subsample
from mmint.metrics.transfer import transfer_scores

__all__ = [
    "DEFAULT_RESOLUTIONS",
    "SCIB_MAX_CELLS",
    "VARIANCE_EPS",
    "PredictionAccumulator",
    "accumulate",
    "ari",
    "auroc",
    "class_level_ari",
    "degenerate_features",
    "exact_neighbors",
    "foscttm",
    "hungarian_accuracy",
    "iter_row_chunks",
    "kmeans_labels",
    "latent_distance",
    "leiden_best",
    "modality_mixing",
    "nmi",
    "pearson_per_cell",
    "r2",
    "scib_scores",
    "stratified_subsample",
    "transfer_scores",
]
