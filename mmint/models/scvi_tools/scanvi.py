"""scvi-tools' scANVI (Xu et al. 2021) for annotation transfer, scored by mmint's metric path.

scVI is pre-trained on the RNA counts, then scANVI starts from it (scvi-tools' recommended
route, ``SCANVI.from_scvi_model``). Only the training cells' labels are given; validation and
test cells are unlabelled. On ``split.kind=holdout_batch`` the target batch (mmint's test set)
joins training unlabelled, as UnitedNet's ``stage=transfer`` does; its labels are never read
(the data module hides them). Groups are scANVI's predicted labels; scANVI models RNA only, so
cross-modal prediction and alignment scores do not apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmint.errors import InputError
from mmint.models.scvi_tools.base import ScviIntegrator
from mmint.models.scvi_tools.data import batch_column, raw_matrix
from mmint.models.wholeset import Embedding

UNLABELLED = "__unlabelled__"
RNA_ONLY = "scANVI models RNA only: it does not predict other modalities"
ONE_LATENT = "scANVI has one (RNA) latent"


class ScviScanVI(ScviIntegrator):
    """scvi-tools' scANVI on the RNA counts, trained with the training cells' labels.

    Parameters
    ----------
    spec
        Data description (an RNA counts modality).
    n_latent
        Latent width (scvi-tools' default 10).
    max_epochs
        scVI pre-training epochs (None: scvi-tools' heuristic).
    scanvi_epochs
        scANVI epochs (None: scvi-tools' rule after pre-training, 2 to 10).
    modality
        The RNA modality (None: the data's RNA counts modality).
    train_kwargs, model_kwargs
        Other keyword arguments of ``SCANVI.train`` and of ``SCVI(...)``.
    seed
        ``scvi.settings.seed``.
    """

    name = "scvi_scanvi"
    groups_are_labels = True
    translates = False
    not_applicable = {
        "r2": RNA_ONLY,
        "r2_variance_weighted": RNA_ONLY,
        "r2_excluded_features": RNA_ONLY,
        "pearson": RNA_ONLY,
        "auroc": RNA_ONLY,
        "foscttm": ONE_LATENT,
        "latent_distance": ONE_LATENT,
        "foscttm_pairs": ONE_LATENT,
        "latent_distance_pairs": ONE_LATENT,
    }

    def __init__(
        self,
        spec: Any,
        n_latent: int = 10,
        max_epochs: int | None = None,
        scanvi_epochs: int | None = None,
        modality: str | None = None,
        train_kwargs: dict | None = None,
        model_kwargs: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            spec,
            seed=seed,
            n_latent=n_latent,
            max_epochs=max_epochs,
            scanvi_epochs=scanvi_epochs,
            modality=modality,
            train_kwargs=dict(train_kwargs or {}),
            model_kwargs=dict(model_kwargs or {}),
        )

    def rna(self, dm: Any) -> str:
        """The RNA counts modality scANVI reads."""
        m = self.hparams["modality"]
        if m is None:
            return modality_roles_rna(dm)
        if m not in dm.modalities or dm.data.modalities[m].kind != "counts":
            raise InputError(
                f"'{m}' is not a counts modality of the data",
                "model.modality",
                f"use one of {[k for k in dm.modalities if dm.data.modalities[k].kind == 'counts']}",
            )
        return m

    def adata(self, dm: Any) -> Any:
        """All cells' RNA counts with the batch and the visible labels (training cells only)."""
        import anndata as ad
        import pandas as pd

        if not dm.label_names:
            raise InputError("the data has no labels", f"model={self.name}", "set data.label_key")
        labels = np.full(dm.data.n_cells, UNLABELLED, dtype=object)
        train = dm.split["train"]
        known = train[dm.batch_labels[train] >= 0]
        labels[known] = np.asarray(dm.label_names, dtype=object)[dm.batch_labels[known]]
        obs = pd.DataFrame(
            {"batch": batch_column(dm), "label": pd.Categorical(labels)},
            index=dm.data.names.astype(str),
        )
        return ad.AnnData(raw_matrix(dm, self.rna(dm)), obs=obs)

    def build(self, dm: Any, for_loading: bool = False) -> Any:
        """scVI on the cells (``for_loading``: scANVI with the same architecture)."""
        from scvi.model import SCANVI, SCVI

        adata = self.adata(dm)
        cls = SCANVI if for_loading else SCVI
        if for_loading:
            SCANVI.setup_anndata(
                adata, labels_key="label", unlabeled_category=UNLABELLED, batch_key="batch"
            )
        else:
            SCVI.setup_anndata(adata, labels_key="label", batch_key="batch")
        return cls(adata, n_latent=self.hparams["n_latent"], **self.hparams["model_kwargs"])

    def train_scvi(self, model: Any, dm: Any, trainer_kwargs: dict[str, Any]) -> Any:
        """scVI pre-training, then scANVI from it; the holdout target joins training
        unlabelled."""
        from scvi.model import SCANVI

        target = dm.split["test"] if dm.split_config.get("kind") == "holdout_batch" else None
        train = dm.split["train"]
        labelled = train[dm.batch_labels[train] >= 0]
        split = self.splitter_kwargs(self.split_indices(dm, train_extra=target), 128, labelled)
        model.train(
            max_epochs=self.hparams["max_epochs"], datasplitter_kwargs=split, **trainer_kwargs
        )
        scvi_epochs = len(model.history.get("elbo_train", []))
        scanvi = SCANVI.from_scvi_model(model, unlabeled_category=UNLABELLED)
        scanvi.train(
            max_epochs=self.hparams["scanvi_epochs"],
            datasplitter_kwargs=split,
            **self.hparams["train_kwargs"],
            **trainer_kwargs,
        )
        self.model_info = {
            "scvi_epochs": scvi_epochs,
            "scanvi_epochs": len(scanvi.history.get("elbo_train", [])),
            "n_latent": int(scanvi.module.n_latent),
            "labelled_cells": int((dm.batch_labels[dm.split["train"]] >= 0).sum()),
            "unlabelled_target_in_training": target is not None,
        }
        return scanvi

    def embed(self, dm: Any, cells: np.ndarray) -> Embedding:
        """scANVI's latent and predicted labels (as mmint's label codes) of ``cells``."""
        model = self.model(dm)
        z = model.get_latent_representation(indices=cells, batch_size=512)
        names = np.asarray(model.predict(indices=cells, batch_size=512)).astype(str)
        code = {str(name): i for i, name in enumerate(dm.label_names)}
        groups = np.array([code.get(n, -1) for n in names], dtype=np.int64)
        return Embedding(z, {self.rna(dm): z}, groups)


def modality_roles_rna(dm: Any) -> str:
    """The RNA counts modality of the data (a counts modality without the ``clr`` transform)."""
    for m, mod in dm.data.modalities.items():
        if mod.kind == "counts" and dm.transform_names[m] != "clr":
            return m
    raise InputError(
        "no RNA counts modality", "data modalities", "scANVI needs RNA counts (kind: counts)"
    )
