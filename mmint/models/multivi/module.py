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
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmint import keys
from mmint.data.modality import TARGET_SUM
from mmint.errors import InputError
from mmint.models.hparams import check_choice
from mmint.models.loss_output import LossOutput
from mmint.nn.batch import batch_one_hot
from mmint.nn.likelihoods import (
    log_bernoulli_factors,
    log_nb,
    log_nb_mixture,
    log_normal,
    log_zinb,
)
from mmint.nn.mlp import MLP

Batch = dict[str, Tensor]
GeneLikelihood = Literal["nb", "zinb"]
Library = Literal["learned", "observed"]
ModalityWeights = Literal["equal", "universal", "cell"]
ModalityPenalty = Literal["jeffreys", "mmd", "none"]

_VAR_EPS = 1e-4  # floor of encoder variances (scvi-tools uses 0; this keeps 1/var finite)
_MAX_LOG = 15.0  # clamp of log-rates before exp, against overflow early in training


# ---------------------------------------------------------------------------- divergences
def kl_standard_normal(mean: Tensor, var: Tensor) -> Tensor:
    """``KL(N(mean, var) || N(0, I))`` summed over the last dimension."""
    return 0.5 * (var + mean**2 - 1.0 - torch.log(var)).sum(-1)


def jeffreys_divergence(m1: Tensor, v1: Tensor, m2: Tensor, v2: Tensor) -> Tensor:
    """Symmetric KL ``KL(N1 || N2) + KL(N2 || N1)`` of diagonal Gaussians, summed over dims.

    ``v1`` and ``v2`` are variances; the Normal scales are their square roots. scvi-tools 1.x
    passes ``sqrt(var)`` to a function that takes the square root again, so its scales are
    ``var ** 0.25``; mmint uses the textbook divergence (as the original v0.13 code did).
    """
    return 0.5 * ((v1 / v2 + v2 / v1) + (m1 - m2) ** 2 * (1.0 / v1 + 1.0 / v2) - 2.0).sum(-1)


def gaussian_mmd(x: Tensor, y: Tensor, scales: tuple[float, ...] = (0.25, 1.0, 4.0)) -> Tensor:
    """Kernel maximum mean discrepancy (biased V-statistic) between samples ``x`` and ``y``.

    The kernel is the average of Gaussian kernels ``exp(-d2 / (s * m))`` over ``scales``,
    where ``m`` is the (lower) median squared distance between distinct pooled samples
    (detached, so the bandwidth follows the data but is not optimised).

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(k, d)``.
    scales
        Multipliers of the median bandwidth.
    """
    pooled = torch.cat([x, y])
    d2 = torch.cdist(pooled, pooled).pow(2)
    n = len(pooled)
    off_diag = d2[~torch.eye(n, dtype=torch.bool, device=d2.device)]
    median = off_diag.detach().median().clamp_min(1e-6)
    kernel = sum(torch.exp(-d2 / (s * median)) for s in scales) / len(scales)
    nx = len(x)
    return (
        kernel[:nx, :nx].mean() + kernel[nx:, nx:].mean() - 2.0 * kernel[:nx, nx:].mean()
    ).clamp_min(0.0)


# ---------------------------------------------------------------------------- mixing
def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Softmax over observed entries only (``mask`` 0/1, same shape as ``logits``).

    A row without any observed entry gets uniform weights, so it stays finite.
    """
    observed = mask > 0
    none = ~observed.any(-1, keepdim=True)
    observed = observed | none
    masked = logits.masked_fill(~observed, float("-inf"))
    return torch.softmax(masked, dim=-1)


def mix_posteriors(means: Tensor, variances: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted average of per-modality Gaussian posteriors.

    Parameters
    ----------
    means, variances
        ``(M, n, d)``, one slice per modality.
    weights
        ``(n, M)``, rows summing to one (0 for missing modalities).

    Returns
    -------
    mean, variance
        ``mean = sum_m w_m mu_m`` and ``variance = sum_m sqrt(w_m) var_m``. The sqrt rule is
        scvi-tools' (two equal modalities give ``(v1 + v2) / sqrt(2)``); it is not the variance
        of a weighted average of independent Gaussians (``sum w_m**2 var_m``). A cell with one
        observed modality gets exactly that modality's posterior.
    """
    w = weights.T.unsqueeze(-1)  # (M, n, 1)
    # sqrt has an infinite slope at 0 (a missing modality): clamp so learned weights get
    # finite gradients, then zero the missing ones exactly
    root = torch.where(w > 0, w.clamp_min(1e-12).sqrt(), torch.zeros_like(w))
    return (w * means).sum(0), (root * variances).sum(0)


# ---------------------------------------------------------------------------- networks
def _body(
    n_in: int, n_hidden: int, n_layers: int, dropout: float, sparse_input: bool = False
) -> nn.Module:
    """``n_layers`` blocks of Linear -> (Dropout) -> LayerNorm -> LeakyReLU.

    ``sparse_input``: the input may be a sparse batch (see :class:`mmint.nn.mlp.MLP`).
    """
    mlp = MLP(
        n_in,
        [n_hidden] * (n_layers - 1),
        n_hidden,
        activation="leaky_relu",
        out_activation="leaky_relu",
        dropout=dropout,
        layer_norm=True,
        out_norm="layer",
        sparse_input=sparse_input,
    )
    # MLP puts no dropout on its last block; add it so every layer has the same treatment
    return nn.Sequential(mlp, nn.Dropout(dropout)) if dropout > 0 else mlp


class GaussianEncoder(nn.Module):
    """Input (dense or sparse) -> mean and variance of a diagonal Gaussian posterior."""

    def __init__(
        self,
        n_in: int,
        n_latent: int,
        n_hidden: int,
        n_layers: int,
        dropout: float,
        sparse_input: bool = False,
    ):
        super().__init__()
        self.body = _body(n_in, n_hidden, n_layers, dropout, sparse_input)
        self.mean = nn.Linear(n_hidden, n_latent)
        self.log_var = nn.Linear(n_hidden, n_latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mean, variance)``, each ``(n, n_latent)``."""
        h = self.body(x)
        return self.mean(h), torch.exp(self.log_var(h).clamp(max=_MAX_LOG)) + _VAR_EPS


class _Decoder(nn.Module):
    """Common part of the modality decoders: ``[z, one-hot batch] -> hidden``.

    Subclasses implement :meth:`log_prob` (per-cell log-likelihood summed over features) and
    :meth:`predict` (prediction in the modality's model-input space).
    """

    def __init__(self, modality: str, n_in: int, n_features: int, n_hidden: int, n_layers: int):
        super().__init__()
        self.modality = modality
        self.n_features = n_features
        self.body = _body(n_in, n_hidden, n_layers, 0.0)

    def log_prob(self, h: Tensor, batch: Batch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class CountsDecoder(_Decoder):
    """Gene counts: negative binomial (or ZINB) with mean ``softmax(scale) * library``.

    Parameters
    ----------
    likelihood
        ``"nb"`` or ``"zinb"``.
    library
        ``"observed"``: the log of the cell's total counts; ``"learned"``: a small network on
        ``log1p`` of the raw counts (scvi-tools' ``LibrarySizeEncoder``, without a prior).
    transform
        The model-input transform; :meth:`predict` returns ``log1p(1e4 * scale)`` (the
        ``lognorm`` space of the input, library-free).
    """

    def __init__(
        self,
        modality: str,
        n_in: int,
        n_features: int,
        n_hidden: int,
        n_layers: int,
        likelihood: GeneLikelihood = "nb",
        library: Library = "observed",
    ):
        super().__init__(modality, n_in, n_features, n_hidden, n_layers)
        self.likelihood, self.library = likelihood, library
        self.scale = nn.Linear(n_hidden, n_features)
        self.zi_logits = nn.Linear(n_hidden, n_features) if likelihood == "zinb" else None
        self.log_theta = nn.Parameter(torch.zeros(n_features))  # gene dispersion
        self.library_encoder = (
            nn.Sequential(_body(n_features, n_hidden, n_layers, 0.0), nn.Linear(n_hidden, 1))
            if library == "learned"
            else None
        )

    def log_library(self, batch: Batch) -> Tensor:
        """Log library size ``(n, 1)``, observed or learned."""
        counts = batch[keys.counts_key(self.modality)]
        if self.library_encoder is not None:
            # log1p of the raw counts, as scvi-tools: the lognorm input has the library removed
            return self.library_encoder(torch.log1p(counts)).clamp(max=_MAX_LOG)
        return torch.log(counts.sum(-1, keepdim=True).clamp_min(1.0))

    def log_prob(self, h: Tensor, batch: Batch) -> Tensor:
        counts = batch[keys.counts_key(self.modality)]
        mu = torch.softmax(self.scale(h), -1) * torch.exp(self.log_library(batch))
        theta = torch.exp(self.log_theta)
        if self.zi_logits is None:
            return log_nb(counts, mu, theta).sum(-1)
        return log_zinb(counts, mu, theta, self.zi_logits(h)).sum(-1)

    def predict(self, h: Tensor) -> Tensor:
        return torch.log1p(torch.softmax(self.scale(h), -1) * TARGET_SUM)


class ProteinDecoder(_Decoder):
    """Protein (ADT) counts: negative binomial, optionally a background/foreground mixture.

    Without ``mixture`` the decoder outputs the log-rate of each protein directly (no library,
    as in totalVI). With ``mixture``, a background log-rate ``b``, a foreground fold
    ``1 + softplus(f)`` and a mixing logit give ``w * NB(exp(b)) + (1 - w) * NB(exp(b) * fold)``
    (totalVI's form, with a deterministic background instead of totalVI's sampled one and its
    prior). :meth:`predict` returns the CLR of the expected counts (the ``clr`` model input).
    """

    def __init__(
        self,
        modality: str,
        n_in: int,
        n_features: int,
        n_hidden: int,
        n_layers: int,
        mixture: bool = False,
    ):
        super().__init__(modality, n_in, n_features, n_hidden, n_layers)
        self.mixture = mixture
        self.log_rate = nn.Linear(n_hidden, n_features)
        self.fold = nn.Linear(n_hidden, n_features) if mixture else None
        self.mix_logits = nn.Linear(n_hidden, n_features) if mixture else None
        self.log_theta = nn.Parameter(torch.zeros(n_features))

    @torch.no_grad()
    def init_rates(self, mean_counts: Tensor) -> None:
        """Start the (background) log-rate at the log mean count of each protein.

        totalVI / MULTIVI start their protein background from the training data too; from a
        zero bias (rate 1) the rates of ADT panels (hundreds of counts) take far more steps
        than a run has at lr 1e-4.
        """
        self.log_rate.bias.copy_(torch.log(mean_counts.clamp_min(1e-3)))

    def _rates(self, h: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        back = torch.exp(self.log_rate(h).clamp(max=_MAX_LOG))
        if not self.mixture:
            return back, None, None
        fore = back * (1.0 + F.softplus(self.fold(h)))
        return back, fore, self.mix_logits(h)

    def log_prob(self, h: Tensor, batch: Batch) -> Tensor:
        counts = batch[keys.counts_key(self.modality)]
        theta = torch.exp(self.log_theta)
        back, fore, logits = self._rates(h)
        if fore is None:
            return log_nb(counts, back, theta).sum(-1)
        return log_nb_mixture(counts, back, fore, theta, logits).sum(-1)

    def predict(self, h: Tensor) -> Tensor:
        back, fore, logits = self._rates(h)
        mean = back if fore is None else torch.lerp(fore, back, torch.sigmoid(logits))
        log = torch.log1p(mean)
        return log - log.mean(-1, keepdim=True)


class BinaryDecoder(_Decoder):
    """Peaks: Bernoulli with probability ``p * cell_factor * sigmoid(region_factor)``.

    ``p`` comes from the latent, the cell factor from a network on the cell's own binary input
    (scvi-tools' ``l_encoder_accessibility``) and region factors are learned per feature.
    :meth:`predict` cannot use the cell factor of a modality it does not see, so it uses the
    running mean of the training cells' factors.
    """

    def __init__(
        self,
        modality: str,
        n_in: int,
        n_features: int,
        n_hidden: int,
        n_layers: int,
        n_layers_factor: int = 2,
        momentum: float = 0.02,
    ):
        super().__init__(modality, n_in, n_features, n_hidden, n_layers)
        self.prob = nn.Linear(n_hidden, n_features)
        self.region_factors = nn.Parameter(torch.zeros(n_features))
        self.cell_factor = nn.Sequential(
            _body(n_features, n_hidden, n_layers_factor, 0.0, sparse_input=True),
            nn.Linear(n_hidden, 1),
        )
        self.momentum = momentum
        self.register_buffer("mean_cell_factor", torch.tensor(1.0))

    def log_prob(self, h: Tensor, batch: Batch) -> Tensor:
        x = batch[self.modality]  # dense or sparse
        cell = torch.sigmoid(self.cell_factor(x))
        if self.training:
            observed = batch.get(
                keys.mask_key(self.modality), torch.ones(x.shape[0], device=x.device)
            )
            if observed.sum() > 0:
                batch_mean = (cell.squeeze(-1).detach() * observed).sum() / observed.sum()
                self.mean_cell_factor.lerp_(batch_mean, self.momentum)
        return log_bernoulli_factors(x, self.prob(h), cell, self.region_factors)

    def predict(self, h: Tensor) -> Tensor:
        return (
            torch.sigmoid(self.prob(h)) * self.mean_cell_factor * torch.sigmoid(self.region_factors)
        )


class ContinuousDecoder(_Decoder):
    """Continuous features: Gaussian with a decoded mean and a learned per-feature variance."""

    def __init__(self, modality: str, n_in: int, n_features: int, n_hidden: int, n_layers: int):
        super().__init__(modality, n_in, n_features, n_hidden, n_layers)
        self.mean = nn.Linear(n_hidden, n_features)
        self.log_var = nn.Parameter(torch.zeros(n_features))

    def log_prob(self, h: Tensor, batch: Batch) -> Tensor:
        var = torch.exp(self.log_var) + 1e-6
        return log_normal(batch[self.modality], self.mean(h), var).sum(-1)

    def predict(self, h: Tensor) -> Tensor:
        return self.mean(h)


# ---------------------------------------------------------------------------- the VAE
class MultiVAE(nn.Module):
    """MultiVI's variational autoencoder over any number of modalities.

    Parameters
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

    def __init__(
        self,
        modalities: list[str],
        kinds: dict[str, str],
        n_features: dict[str, int],
        transforms: dict[str, str],
        n_batches: int,
        n_hidden: int,
        n_latent: int,
        n_layers_encoder: int = 2,
        n_layers_decoder: int = 2,
        dropout_rate: float = 0.1,
        gene_likelihood: GeneLikelihood = "nb",
        library: Library = "observed",
        protein_mixture: bool = False,
        modality_weights: ModalityWeights = "equal",
        modality_penalty: ModalityPenalty = "jeffreys",
        penalty_weight: float = 1.0,
        n_cells: int = 0,
    ) -> None:
        super().__init__()
        check_choice("gene_likelihood", gene_likelihood, ("nb", "zinb"))
        check_choice("library", library, ("learned", "observed"))
        check_choice("modality_weights", modality_weights, ("equal", "universal", "cell"))
        check_choice("modality_penalty", modality_penalty, ("jeffreys", "mmd", "none"))
        self.modalities = list(modalities)
        self.n_batches = n_batches
        # batches with training cells; set by the plan from the data spec (not in checkpoints)
        self.register_buffer("seen_batches", None, persistent=False)
        self.n_latent = n_latent
        self.modality_weights = modality_weights
        self.modality_penalty = modality_penalty
        self.penalty_weight = penalty_weight
        n_cov = n_batches if n_batches > 1 else 0
        n_in = n_latent + n_cov
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for m in self.modalities:
            f = n_features[m]
            # counts and binary inputs may come as sparse batches
            self.encoders[m] = GaussianEncoder(
                f,
                n_latent,
                n_hidden,
                n_layers_encoder,
                dropout_rate,
                sparse_input=kinds[m] in ("counts", "binary"),
            )
            args = (m, n_in, f, n_hidden, n_layers_decoder)
            if kinds[m] == "counts" and transforms.get(m) == "clr":
                self.decoders[m] = ProteinDecoder(*args, mixture=protein_mixture)
            elif kinds[m] == "counts":
                self.decoders[m] = CountsDecoder(*args, likelihood=gene_likelihood, library=library)
            elif kinds[m] == "binary":
                self.decoders[m] = BinaryDecoder(*args)
            elif kinds[m] == "continuous":
                self.decoders[m] = ContinuousDecoder(*args)
            else:
                raise InputError(
                    f"unknown kind '{kinds[m]}' of modality '{m}'",
                    "data.kinds",
                    "use counts, binary or continuous",
                )
        n_mod = len(self.modalities)
        if modality_weights == "equal":
            self.register_buffer("weight_logits", torch.zeros(n_mod))
        elif modality_weights == "universal":
            self.weight_logits = nn.Parameter(torch.zeros(n_mod))
        else:
            self.weight_logits = nn.Parameter(torch.zeros(n_cells, n_mod))

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

    def loss(self, batch: Batch, kl_weight: float = 1.0) -> LossOutput:
        """Negative ELBO with warm-up weight on the KL, plus the alignment penalty.

        ``loss = mean_cells(recon + kl_weight * KL + penalty_weight * jeffreys)
        + penalty_weight * mmd``; reconstruction counts only the modalities a cell has.
        Terms: per-cell ``reconstruction``, ``reconstruction_<modality>`` and ``kl``, the
        weighted ``penalty``; ``outputs["z"]``: the latent sample.
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


def _sample(mean: Tensor, var: Tensor) -> Tensor:
    """Reparameterised sample of ``N(mean, var)``."""
    return mean + var.sqrt() * torch.randn_like(mean)


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
