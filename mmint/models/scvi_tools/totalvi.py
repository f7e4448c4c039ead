"""scvi-tools' totalVI (Gayoso et al. 2021) on CITE-seq cells, scored by mmint's metric path.

scvi-tools 1.4.2's defaults except the settings the MultiVI parity study (``benchmarks/results/multivi_parity.md``) fixes for
MULTIVI: ``n_latent`` 20 (totalVI's default as well), 200 epochs, no early stopping. totalVI has
one encoder over RNA and protein together, so it has no per-modality latent (alignment scores
do not apply), and a prediction from one modality feeds zeros for the other, which totalVI was
not trained with: its cross-modal scores are a lower bound of what it can do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmint.errors import InputError
from mmint.models.scvi_tools.base import ScviIntegrator
from mmint.models.scvi_tools.data import ATAC, PROTEIN, RNA, build_mudata
from mmint.models.scvi_tools.predict import totalvi_generate
from mmint.models.wholeset import Embedding

ONE_ENCODER = "totalVI has one joint encoder (RNA and protein together): no per-modality latent"


class ScviTotalVI(ScviIntegrator):
    """scvi-tools' totalVI: joint latent, RNA <-> protein predictions.

    Parameters
    ----------
    spec
        Data description (RNA counts and ADT counts with the ``clr`` transform).
    n_latent
        Latent width.
    max_epochs, early_stopping
        Training epochs; scvi-tools' early stopping on the validation cells.
    train_kwargs, model_kwargs
        Other keyword arguments of ``TOTALVI.train`` and ``TOTALVI(...)``.
    seed
        ``scvi.settings.seed``.
    """

    name = "scvi_totalvi"
    generate = staticmethod(totalvi_generate)
    not_applicable = {
        "foscttm": ONE_ENCODER,
        "latent_distance": ONE_ENCODER,
        "foscttm_pairs": ONE_ENCODER,
        "latent_distance_pairs": ONE_ENCODER,
    }

    def __init__(
        self,
        spec: Any,
        n_latent: int = 20,
        max_epochs: int = 200,
        early_stopping: bool = False,
        train_kwargs: dict | None = None,
        model_kwargs: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(spec, locals())

    def build(self, dm: Any, for_loading: bool = False) -> Any:
        """MuData of mmint's cells set up for totalVI; the untrained model."""
        from scvi.model import TOTALVI

        mdata, self.roles = build_mudata(dm, dense_protein=True)
        if PROTEIN not in self.roles or ATAC in self.roles:
            raise InputError(
                f"totalVI takes RNA and ADT counts; this dataset has {sorted(self.roles.values())}",
                f"model={self.name}",
                "use a CITE-seq dataset (ADT counts with transforms {adt: clr}) or scvi_multivi",
            )
        TOTALVI.setup_mudata(
            mdata,
            batch_key="batch",
            modalities={
                "rna_layer": self.roles[RNA],
                "protein_layer": self.roles[PROTEIN],
                "batch_key": self.roles[RNA],
            },
        )
        return TOTALVI(mdata, n_latent=self.hparams["n_latent"], **self.hparams["model_kwargs"])

    def train_scvi(self, model: Any, dm: Any, trainer_kwargs: dict[str, Any]) -> Any:
        """``TOTALVI.train`` on mmint's training cells (validation: mmint's val cells)."""
        options = self.splitter_kwargs(
            self.split_indices(dm), int(self.hparams["train_kwargs"].get("batch_size", 256))
        )
        model.train(
            max_epochs=int(self.hparams["max_epochs"]),
            early_stopping=bool(self.hparams["early_stopping"]),
            external_indexing=options.pop("external_indexing"),
            datasplitter_kwargs=options,
            **self.hparams["train_kwargs"],
            **trainer_kwargs,
        )
        self.model_info = {
            "n_latent": int(model.module.n_latent),
            "selection": "last epoch" if not self.hparams["early_stopping"] else "early stopping",
            "translation": "the other modality's counts zeroed (totalVI is not trained for it)",
        }
        return model

    def embed(self, dm: Any, cells: np.ndarray) -> Embedding:
        """totalVI's joint latent of ``cells`` (no per-modality latents)."""
        model = self.model(dm)
        return Embedding(model.get_latent_representation(indices=cells, batch_size=512), {})
