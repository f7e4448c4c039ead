"""CVQVAE-style settings: the typed description the networks are built from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from mmint.data.spec import DataSpec


@dataclass(frozen=True)
class Networks:
    """The CVQVAE-style networks for one dataset (what
    :class:`~mmint.models.cvqvae.module.CVQVAEModule` is built from).

    Attributes
    ----------
    modalities
        Modality names in model order.
    n_features
        ``{modality: model-input width}``.
    kinds
        ``{modality: "counts" | "binary" | "continuous"}``.
    variances
        ``{modality: variance of the model input over training cells}``; reconstruction MSEs
        are divided by it (with ``input_rep="pca"`` the projection's score variance is used).
    n_batches
        Number of batches in the data.
    n_latent
        Latent (and code) dimension.
    hidden
        Encoder hidden widths; decoders use ``decoder_hidden`` or these reversed.
    decoder_hidden
        Decoder hidden widths (``None``: ``hidden`` reversed).
    dropout
        Dropout after each hidden Linear (0 in the original).
    vq
        Quantise before decoding; ``False`` is the CVAE ablation (decoders read ``z``).
    n_codes, decay, eps, commitment, dead_code_threshold
        Codebook options, see :class:`mmint.nn.vq.VectorQuantizerEMA`.
    align_weight
        Weight of the latent alignment MSE (``lambda_z``).
    self_recon
        Also reconstruct each modality from its own code.
    recon_loss
        ``"mse"`` (MSE / variance for every target, the original) or ``"bce"`` (binary
        targets use BCE on logits, others stay MSE / variance).
    input_rep
        ``"features"`` (the model input) or ``"pca"`` (a fixed projection onto ``n_pca``
        principal axes fitted from training cells; encoders read and decoders reconstruct
        the scores).
    n_pca
        Number of principal axes with ``input_rep="pca"``.
    decoder_batch
        Append the cell's batch one-hot to every decoder input (an addition to the original,
        which has no covariates): the decoders then explain batch shifts, so the latents need
        not carry the batch.
    """

    modalities: tuple[str, ...]
    n_features: dict[str, int]
    kinds: dict[str, str]
    variances: dict[str, float]
    n_batches: int = 1
    n_latent: int = 16
    hidden: tuple[int, ...] = (256, 128)
    decoder_hidden: tuple[int, ...] | None = None
    dropout: float = 0.0
    vq: bool = True
    n_codes: int = 1024
    decay: float = 0.99
    eps: float = 1e-5
    commitment: float = 0.25
    dead_code_threshold: float = 1e-2
    align_weight: float = 10.0
    self_recon: bool = False
    recon_loss: str = "mse"
    input_rep: str = "features"
    n_pca: int = 50
    decoder_batch: bool = False

    @classmethod
    def resolve(cls, spec: DataSpec, settings: Mapping[str, Any]) -> Networks:
        """The networks for ``spec`` with the model's ``settings`` (its hyper-parameters;
        keys that are not fields are ignored)."""
        data = {
            "modalities": tuple(spec.modalities),
            "n_features": dict(spec.n_features),
            "kinds": dict(spec.kinds),
            "variances": dict(spec.input_variance),
            "n_batches": int(spec.n_batches),
        }
        names = {f.name for f in fields(cls)}
        return cls(**data, **{k: v for k, v in settings.items() if k in names and k not in data})
