"""MultiVI-style building blocks (pure torch): the divergences, the posterior mixing, the
Gaussian encoder and the kind-specific decoders that :class:`~mmint.models.multivi.module
.MultiVAE` is made of (see ``docs/multivi.md``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmint import keys
from mmint.data.modality import TARGET_SUM
from mmint.models.multivi.config import GeneLikelihood, Library
from mmint.nn.likelihoods import (
    log_bernoulli_factors,
    log_nb,
    log_nb_mixture,
    log_normal,
    log_zinb,
)
from mmint.nn.mlp import MLP
from mmint.nn.sparse import dense

Batch = dict[str, Tensor]

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
        # a sparse batch (a wide sparse modality declared continuous): the Gaussian reads
        # every entry, so this batch's target is made dense (one batch at a time)
        return log_normal(dense(batch[self.modality]), self.mean(h), var).sum(-1)

    def predict(self, h: Tensor) -> Tensor:
        return self.mean(h)


# ---------------------------------------------------------------------------- the VAE


def _sample(mean: Tensor, var: Tensor) -> Tensor:
    """Reparameterised sample of ``N(mean, var)``."""
    return mean + var.sqrt() * torch.randn_like(mean)
