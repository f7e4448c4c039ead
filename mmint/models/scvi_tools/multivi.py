"""scvi-tools' MULTIVI (Ashuach et al. 2023) on mmint's cells, scored by mmint's metric path.

Settings are scvi-tools 1.4.2's defaults except the ones the MultiVI parity study (``benchmarks/results/multivi_parity.md``)
fixes: ``n_latent`` 20, 200 epochs, no early stopping (the last epoch is scored). The hidden
width is scvi-tools' own rule, ``min(128, int(sqrt(n_regions or n_genes)))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmint.models.scvi_tools.base import ScviIntegrator
from mmint.models.scvi_tools.data import ATAC, PROTEIN, RNA, build_mudata
from mmint.models.scvi_tools.predict import multivi_generate
from mmint.models.wholeset import Embedding

#: get_latent_representation's name of each role's per-modality latent
LATENT_NAME = {RNA: "expression", ATAC: "accessibility", PROTEIN: "protein"}


class ScviMultiVI(ScviIntegrator):
    """scvi-tools' MULTIVI: joint and per-modality latents, cross-modal predictions.

    Parameters
    ----------
    spec
        Data description.
    n_latent, n_hidden
        MULTIVI's latent and hidden widths (``n_hidden`` None: scvi-tools' rule).
    max_epochs
        Training epochs.
    early_stopping
        scvi-tools' early stopping on the validation cells (its default is on; the parity
        protocol turns it off).
    train_kwargs
        Other keyword arguments of ``MULTIVI.train`` (e.g. ``lr``).
    model_kwargs
        Other keyword arguments of ``MULTIVI(...)``.
    seed
        ``scvi.settings.seed``.
    """

    name = "scvi_multivi"
    generate = staticmethod(multivi_generate)

    def __init__(
        self,
        spec: Any,
        n_latent: int = 20,
        n_hidden: int | None = None,
        max_epochs: int = 200,
        early_stopping: bool = False,
        train_kwargs: dict | None = None,
        model_kwargs: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(spec, locals())

    def build(self, dm: Any, for_loading: bool = False) -> Any:
        """MuData of mmint's cells set up for MULTIVI; the untrained model."""
        from scvi.model import MULTIVI

        mdata, self.roles = build_mudata(dm)
        MULTIVI.setup_mudata(
            mdata, batch_key="batch", modalities={**self.roles, "batch_key": self.roles[RNA]}
        )
        return MULTIVI(
            mdata,
            n_genes=mdata[self.roles[RNA]].n_vars,
            n_regions=mdata[self.roles[ATAC]].n_vars if ATAC in self.roles else 0,
            n_hidden=self.hparams["n_hidden"],
            n_latent=self.hparams["n_latent"],
            **self.hparams["model_kwargs"],
        )

    def train_scvi(self, model: Any, dm: Any, trainer_kwargs: dict[str, Any]) -> Any:
        """``MULTIVI.train`` on mmint's training cells (validation: mmint's val cells)."""
        model.train(
            max_epochs=int(self.hparams["max_epochs"]),
            early_stopping=bool(self.hparams["early_stopping"]),
            datasplitter_kwargs=self.splitter_kwargs(
                self.split_indices(dm), int(self.hparams["train_kwargs"].get("batch_size", 128))
            ),
            **self.hparams["train_kwargs"],
            **trainer_kwargs,
        )
        self.model_info = {
            "n_hidden": int(model.module.n_hidden),
            "n_latent": int(model.module.n_latent),
            "selection": "last epoch" if not self.hparams["early_stopping"] else "early stopping",
        }
        return model

    def embed(self, dm: Any, cells: np.ndarray) -> Embedding:
        """MULTIVI's joint latent and per-modality latents of ``cells``."""
        model = self.model(dm)
        joint = model.get_latent_representation(modality="joint", indices=cells, batch_size=512)
        latents = {
            m: model.get_latent_representation(
                modality=LATENT_NAME[role], indices=cells, batch_size=512
            )
            for role, m in self.roles.items()
        }
        return Embedding(joint, latents)
