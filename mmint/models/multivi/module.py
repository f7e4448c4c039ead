"""MultiVI-style networks and losses (pure torch, no Lightning).

A re-implementation of the model of Ashuach et al. (2023) as described in scvi-tools'
``MULTIVAE`` (see ``docs/multivi.md``), generalised to any number of modalities of the three
kinds: one Gaussian encoder per modality, a joint posterior that is the masked weighted average
of the observed modalities' posteriors, one decoder with a kind-specific likelihood per
modality, and a penalty that pulls the per-modality posteriors together.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn

from mmint import keys
from mmint.errors import InputError
from mmint.models.hparams import check_choice
from mmint.models.loss_output import LossOutput
from mmint.models.multivi.config import Networks
from mmint.models.multivi.networks import (  # noqa: F401 - the building blocks, re-exported
    BinaryDecoder,
    ContinuousDecoder,
    CountsDecoder,
    GaussianEncoder,
    ProteinDecoder,
    _sample,
    gaussian_mmd,
    jeffreys_divergence,
    kl_standard_normal,
    masked_softmax,
    mix_posteriors,
)
from mmint.nn.batch import batch_one_hot

Batch = dict[str, Tensor]


class MultiVAE(nn.Module):
    """MultiVI's variational autoencoder over any number of modalities, built from a resolved
    :class:`~mmint.models.multivi.config.Networks` (its attributes document the settings).
    """

    def __init__(self, net: Networks) -> None:
        super().__init__()
        check_choice("gene_likelihood", net.gene_likelihood, ("nb", "zinb"))
        check_choice("library", net.library, ("learned", "observed"))
        check_choice("modality_weights", net.modality_weights, ("equal", "universal", "cell"))
        check_choice("modality_penalty", net.modality_penalty, ("jeffreys", "mmd", "none"))
        self.modalities = list(net.modalities)
        self.n_batches = net.n_batches
        # batches with training cells; set by the plan from the data spec (not in checkpoints)
        self.register_buffer("seen_batches", None, persistent=False)
        self.n_latent = net.n_latent
        self.modality_weights = net.modality_weights
        self.modality_penalty = net.modality_penalty
        self.penalty_weight = net.penalty_weight
        n_in = net.n_latent + (net.n_batches if net.n_batches > 1 else 0)
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for m in self.modalities:
            f, kind = net.n_features[m], net.kinds[m]
            # counts and binary inputs may come as sparse batches
            self.encoders[m] = GaussianEncoder(
                f,
                net.n_latent,
                net.n_hidden,
                net.n_layers_encoder,
                net.dropout_rate,
                sparse_input=kind in ("counts", "binary"),
            )
            args = (m, n_in, f, net.n_hidden, net.n_layers_decoder)
            if kind == "counts" and net.transforms.get(m) == "clr":
                self.decoders[m] = ProteinDecoder(*args, mixture=net.protein_mixture)
            elif kind == "counts":
                self.decoders[m] = CountsDecoder(
                    *args, likelihood=net.gene_likelihood, library=net.library
                )
            elif kind == "binary":
                self.decoders[m] = BinaryDecoder(*args)
            elif kind == "continuous":
                self.decoders[m] = ContinuousDecoder(*args)
            else:
                raise InputError(
                    f"unknown kind '{kind}' of modality '{m}'",
                    "data.kinds",
                    "use counts, binary or continuous",
                )
        n_mod = len(self.modalities)
        if net.modality_weights == "equal":
            self.register_buffer("weight_logits", torch.zeros(n_mod))
        elif net.modality_weights == "universal":
            self.weight_logits = nn.Parameter(torch.zeros(n_mod))
        else:
            self.weight_logits = nn.Parameter(torch.zeros(net.n_cells, n_mod))

    # ------------------------------------------------------------------ inference
    def masks(self, batch: Batch) -> Tensor:
        """``(n, M)`` 0/1 float: which modalities each cell has (all ones without mask keys)."""
        ref = batch[self.modalities[0]]
        ones = torch.ones(ref.shape[0], device=ref.device)
        return torch.stack([batch.get(keys.mask_key(m), ones).float() for m in self.modalities], 1)

    def weights(self, batch: Batch, mask: Tensor) -> Tensor:
        """Mixing weights ``(n, M)`` of the modalities (masked softmax)."""
        if self.modality_weights != "cell":
            logits = self.weight_logits.expand_as(mask)
        elif len(self.weight_logits) == 0:
            logits = torch.zeros_like(mask)
        else:
            index = batch[keys.INDEX].long()
            known = index < len(self.weight_logits)
            rows = self.weight_logits[index.clamp(max=len(self.weight_logits) - 1)]
            logits = torch.where(known.unsqueeze(-1), rows, torch.zeros_like(rows))
        return masked_softmax(logits, mask)

    def encode(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Posterior means and variances per modality (``{modality: (n, d)}`` each)."""
        means, variances = {}, {}
        for m in self.modalities:
            means[m], variances[m] = self.encoders[m](batch[m])
        return means, variances

    def joint(
        self, batch: Batch, means: dict[str, Tensor], variances: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mixed posterior ``(mean, variance)`` and the modality mask."""
        mask = self.masks(batch)
        w = self.weights(batch, mask)
        stack = [torch.stack([d[m] for m in self.modalities]) for d in (means, variances)]
        mean, var = mix_posteriors(stack[0], stack[1], w)
        return mean, var, mask

    # ------------------------------------------------------------------ generative
    def covariates(self, batch: Batch, n: int, device: torch.device) -> Tensor | None:
        """One-hot batch codes, or ``None`` with one batch."""
        if self.n_batches <= 1:
            return None
        if keys.BATCH not in batch:
            return torch.zeros(n, self.n_batches, device=device)
        return batch_one_hot(batch[keys.BATCH], self.n_batches, self.seen_batches)

    def hidden(self, z: Tensor, batch: Batch, dst: str) -> Tensor:
        """Decoder hidden layer of ``dst`` for latent ``z``."""
        cov = self.covariates(batch, len(z), z.device)
        return self.decoders[dst].body(z if cov is None else torch.cat([z, cov], -1))

    def predict(self, z: Tensor, batch: Batch, dst: str) -> Tensor:
        """Decode ``z`` into ``dst``'s model-input space."""
        return self.decoders[dst].predict(self.hidden(z, batch, dst))

    # ------------------------------------------------------------------ loss
    def penalty(
        self, means: dict[str, Tensor], variances: dict[str, Tensor], mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Alignment penalty over pairs of modalities, for cells that have both.

        Returns the per-cell penalty ``(n,)`` (Jeffreys) and a batch-level scalar (MMD); the
        unused one is zeros.
        """
        n = mask.shape[0]
        per_cell = torch.zeros(n, device=mask.device)
        scalar = torch.zeros((), device=mask.device)
        if self.modality_penalty == "none":
            return per_cell, scalar
        for (i, a), (j, b) in itertools.combinations(enumerate(self.modalities), 2):
            both = mask[:, i] * mask[:, j]
            if self.modality_penalty == "jeffreys":
                div = jeffreys_divergence(means[a], variances[a], means[b], variances[b])
                per_cell = per_cell + both * div
            else:
                keep = both > 0
                if keep.sum() < 2:
                    continue
                za = _sample(means[a][keep], variances[a][keep])
                zb = _sample(means[b][keep], variances[b][keep])
                scalar = scalar + gaussian_mmd(za, zb)
        return per_cell, scalar

    def loss(self, batch: Batch, kl_weight: float = 1.0, **kw: Any) -> LossOutput:
        """Negative ELBO with warm-up weight on the KL, plus the alignment penalty.

        ``loss = mean_cells(recon + kl_weight * KL + penalty_weight * jeffreys)
        + penalty_weight * mmd``; reconstruction counts only the modalities a cell has.
        Terms: per-cell ``reconstruction``, ``reconstruction_<modality>`` and ``kl``, the
        weighted ``penalty``; ``outputs["z"]``: the latent sample. Other keywords are ignored
        (the VAE plans' one ``loss(batch, **kw)`` signature).
        """
        means, variances = self.encode(batch)
        mean, var, mask = self.joint(batch, means, variances)
        z = _sample(mean, var) if self.training else mean
        recon = torch.zeros(len(z), device=z.device)
        by_mod = {}
        for i, m in enumerate(self.modalities):
            nll = -self.decoders[m].log_prob(self.hidden(z, batch, m), batch)
            # cells without the modality contribute exactly nothing (0 * nan would be nan)
            nll = torch.where(mask[:, i] > 0, nll, torch.zeros_like(nll))
            by_mod[m] = nll
            recon = recon + nll
        kl = kl_standard_normal(mean, var)
        per_cell, scalar = self.penalty(means, variances, mask)
        penalty = self.penalty_weight * (per_cell.mean() + scalar)
        loss = (recon + kl_weight * kl).mean() + penalty
        terms = {"reconstruction": recon, "kl": kl, "penalty": penalty}
        terms.update({f"reconstruction_{m}": v for m, v in by_mod.items()})
        return LossOutput(loss, terms, outputs={"z": z})


def default_sizes(
    kinds: dict[str, str],
    n_features: dict[str, int],
    transforms: dict[str, str],
    n_hidden: int | None,
    n_latent: int | None,
) -> tuple[int, int]:
    """scvi-tools' MultiVI size rules, for any set of modalities.

    ``n_hidden = min(128, int(sqrt(n_peaks)))`` with the peaks of all binary modalities, or of
    the genes (non-CLR counts) when there is no binary modality, or of all features when there
    is neither; ``n_latent = int(sqrt(n_hidden))``. Explicit values win.
    """
    if n_hidden is None:
        peaks = sum(f for m, f in n_features.items() if kinds[m] == "binary")
        genes = sum(
            f for m, f in n_features.items() if kinds[m] == "counts" and transforms.get(m) != "clr"
        )
        base = peaks or genes or sum(n_features.values())
        n_hidden = max(1, min(128, int(math.sqrt(base))))
    if n_latent is None:
        n_latent = max(1, int(math.sqrt(n_hidden)))
    return n_hidden, n_latent
