"""The label-transfer floor: k nearest labelled training cells on the PCA floor's joint latent.

Everything else (per-modality PCA fitted on training cells, ridge translation) is the PCA
floor's. Groups are label codes: the majority label among each cell's ``k`` nearest labelled
training cells (Euclidean, uniform votes, ties to the smallest label code, as scikit-learn),
``k`` chosen on the validation cells by accuracy. Labels of ``holdout_batch`` target cells are
never read (the data module hides them).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models.base import Batch
from mmint.models.hparams import record_hparams
from mmint.models.pca import PCABaseline

UNALIGNED = "per-modality PCA spaces are fitted separately and are not aligned"


class KNNTransfer(PCABaseline):
    """kNN label transfer on the PCA floor's joint latent.

    Parameters
    ----------
    spec
        Data description.
    n_components, ridge_alpha
        The PCA floor's settings.
    n_neighbors
        Candidate ``k``; the one with the best validation accuracy is kept (ties: the smaller).
    seed
        Seed of the randomised SVD.
    """

    name = "knn_transfer"
    groups_are_labels = True
    not_applicable = {
        "foscttm": UNALIGNED,
        "latent_distance": UNALIGNED,
        "foscttm_pairs": UNALIGNED,
        "latent_distance_pairs": UNALIGNED,
    }
    fitted_attributes = (*PCABaseline.fitted_attributes, "reference", "k", "model_info")

    def __init__(
        self,
        spec: DataSpec | dict,
        n_components: int = 30,
        ridge_alpha: float = 1.0,
        n_neighbors: list[int] | int = (5, 10, 15, 30),
        seed: int = 0,
        fit_max_cells: int = 50_000,
    ) -> None:
        super().__init__(
            spec,
            n_components=n_components,
            ridge_alpha=ridge_alpha,
            seed=seed,
            fit_max_cells=fit_max_cells,
        )
        ks = [int(n_neighbors)] if isinstance(n_neighbors, int) else [int(k) for k in n_neighbors]
        record_hparams(self, {**locals(), "n_neighbors": ks})
        self.reference: tuple[np.ndarray, np.ndarray] | None = None
        self.k = ks[0]
        self.model_info: dict[str, Any] = {}

    def fit_data(self, dm: Any) -> Self:
        """Fit the PCA floor, keep the labelled training cells' joint latent, choose ``k``."""
        super().fit_data(dm)
        train = dm.cells("train")
        labels = dm.batch_labels[train]
        cells = train[labels >= 0]
        if len(cells) == 0:
            raise InputError(
                "knn_transfer needs labelled training cells, and has none",
                "data.label_key",
                "use a dataset with labels, or another model",
            )
        self.reference = (self._latent(dm, cells), dm.batch_labels[cells])
        val = dm.cells("val")
        val = val[dm.batch_labels[val] >= 0]
        ks = [k for k in self.hparams["n_neighbors"] if k <= len(cells)] or [len(cells)]
        accuracy = {}
        if len(val):
            z_val = self._latent(dm, val)
            truth = dm.batch_labels[val]
            accuracy = {k: float(np.mean(self.vote(z_val, k) == truth)) for k in ks}
            self.k = max(ks, key=lambda k: (accuracy[k], -k))
        else:
            self.k = ks[0]
        self.model_info = {
            **self.model_info,
            "k": self.k,
            "k_chosen_by": "validation accuracy" if accuracy else "first candidate (no val labels)",
            "validation_accuracy": accuracy,
            "n_reference_cells": int(len(cells)),
        }
        return self

    def _latent(self, dm: Any, cells: np.ndarray) -> np.ndarray:
        """The joint latent of ``cells`` in evaluation batches, wide sparse inputs as sparse
        batches (one batch of every training cell would hold their inputs dense)."""
        batches = dm.iter_batches(cells, sparse=self.accepts_sparse)
        return np.concatenate([self.joint_latent(b).numpy() for b in batches])

    def vote(self, z: np.ndarray, k: int) -> np.ndarray:
        """Majority label among the ``k`` nearest reference cells of each row of ``z``."""
        from sklearn.neighbors import KNeighborsClassifier

        ref, labels = self.reference
        knn = KNeighborsClassifier(n_neighbors=min(k, len(ref))).fit(ref, labels)
        return knn.predict(z)

    def predict_groups(self, batch: Batch) -> Tensor:
        """Transferred label code per cell."""
        return torch.from_numpy(
            self.vote(self.joint_latent(batch).numpy(), self.k).astype(np.int64)
        )
