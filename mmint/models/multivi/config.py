"""MultiVI-style settings: the choices and the typed description the VAE is built from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from mmint.data.spec import DataSpec

GeneLikelihood = Literal["nb", "zinb"]
Library = Literal["learned", "observed"]
ModalityWeights = Literal["equal", "universal", "cell"]
ModalityPenalty = Literal["jeffreys", "mmd", "none"]


@dataclass(frozen=True)
class Networks:
    """The MultiVI-style VAE for one dataset, sizes resolved (what
    :class:`~mmint.models.multivi.module.MultiVAE` is built from).

    Attributes
    ----------
    modalities, kinds, n_features, transforms
        As in :class:`mmint.data.spec.DataSpec`. A ``counts`` modality whose transform is
        ``clr`` is treated as protein (ADT).
    n_batches
        Number of batches; above one, decoders get the one-hot batch (scvi-tools injects the
        batch into the decoders' first layer).
    n_hidden, n_latent
        Hidden width and latent dimension.
    n_layers_encoder, n_layers_decoder
        Hidden layers of the encoders and decoders.
    dropout_rate
        Dropout in the encoders.
    gene_likelihood
        ``"nb"`` or ``"zinb"`` for gene counts.
    library
        ``"observed"`` or ``"learned"`` library size for gene counts.
    protein_mixture
        Background/foreground NB mixture for protein counts.
    modality_weights
        ``"equal"``, ``"universal"`` (one learned weight per modality) or ``"cell"`` (one per
        cell and modality, indexed by ``batch["index"]``; cells beyond ``n_cells`` get equal
        weights).
    modality_penalty
        ``"jeffreys"``, ``"mmd"`` or ``"none"``.
    penalty_weight
        Multiplier of the penalty.
    n_cells
        Rows of the per-cell weight table (``modality_weights="cell"`` only).
    """

    modalities: tuple[str, ...]
    kinds: dict[str, str]
    n_features: dict[str, int]
    transforms: dict[str, str]
    n_batches: int
    n_hidden: int
    n_latent: int
    n_layers_encoder: int = 2
    n_layers_decoder: int = 2
    dropout_rate: float = 0.1
    gene_likelihood: GeneLikelihood = "nb"
    library: Library = "observed"
    protein_mixture: bool = False
    modality_weights: ModalityWeights = "equal"
    modality_penalty: ModalityPenalty = "jeffreys"
    penalty_weight: float = 1.0
    n_cells: int = 0

    @classmethod
    def resolve(cls, spec: DataSpec, settings: Mapping[str, Any], **resolved: Any) -> Networks:
        """The networks for ``spec``: the data's facts, the model's ``settings`` (its
        hyper-parameters; keys that are not fields are ignored) and ``resolved`` values
        (sizes that depend on the data) over both."""
        data = {
            "modalities": tuple(spec.modalities),
            "kinds": dict(spec.kinds),
            "n_features": dict(spec.n_features),
            "transforms": dict(spec.transforms),
            "n_batches": int(spec.n_batches),
        }
        names = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in settings.items() if k in names and k not in data}
        return cls(**{**data, **chosen, **resolved})
