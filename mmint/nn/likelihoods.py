"""Element-wise log-probabilities of the observation models used by the generative models.

Every function is pure (tensors in, tensor of the broadcast shape out, no reduction) so the
caller decides how to sum over features and mask cells. Count distributions use the
mean / inverse-dispersion parametrisation common in single-cell models: a negative binomial
with mean ``mu`` and inverse dispersion ``theta`` has variance ``mu + mu**2 / theta``
(scipy's ``nbinom(n=theta, p=theta / (theta + mu))``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-8


def log_nb(x: Tensor, mu: Tensor, theta: Tensor, eps: float = _EPS) -> Tensor:
    """Log-probability of counts ``x`` under a negative binomial with mean ``mu``.

    Parameters
    ----------
    x
        Observed counts (non-negative, integer-valued floats).
    mu
        Mean (positive).
    theta
        Inverse dispersion (positive); the variance is ``mu + mu**2 / theta``.
    eps
        Added inside the logarithms to keep them finite at ``mu -> 0``.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )


def log_zinb(x: Tensor, mu: Tensor, theta: Tensor, zi_logits: Tensor, eps: float = _EPS) -> Tensor:
    """Log-probability under a zero-inflated negative binomial.

    ``p(x) = pi * [x == 0] + (1 - pi) * NB(x; mu, theta)`` with ``pi = sigmoid(zi_logits)``
    the probability of an extra (technical) zero.
    """
    log_pi = -F.softplus(-zi_logits)  # log sigmoid(l)
    log_one_minus_pi = -F.softplus(zi_logits)  # log (1 - sigmoid(l))
    nb = log_nb(x, mu, theta, eps)
    # at x == 0 both the inflation and the NB mass contribute
    zero_case = torch.logaddexp(log_pi, log_one_minus_pi + nb)
    return torch.where(x < 0.5, zero_case, log_one_minus_pi + nb)


def log_nb_mixture(
    x: Tensor,
    mu_1: Tensor,
    mu_2: Tensor,
    theta_1: Tensor,
    mix_logits: Tensor,
    theta_2: Tensor | None = None,
    eps: float = _EPS,
) -> Tensor:
    """Log-probability under a two-component negative-binomial mixture.

    ``p(x) = w * NB(x; mu_1, theta_1) + (1 - w) * NB(x; mu_2, theta_2)`` with
    ``w = sigmoid(mix_logits)``; ``theta_2`` defaults to ``theta_1``. Used for protein
    counts as background (component 1) plus foreground (component 2).
    """
    theta_2 = theta_1 if theta_2 is None else theta_2
    log_w1 = -F.softplus(-mix_logits)
    log_w2 = -F.softplus(mix_logits)
    return torch.logaddexp(
        log_w1 + log_nb(x, mu_1, theta_1, eps), log_w2 + log_nb(x, mu_2, theta_2, eps)
    )


def log_bernoulli(x: Tensor, p: Tensor) -> Tensor:
    """Log-probability of 0/1 values ``x`` under a Bernoulli with success probability ``p``.

    ``p`` is a probability (not a logit) because MultiVI multiplies probabilities by cell and
    region factors; log terms are clamped at -100 as in :func:`torch.nn.functional.binary_cross_entropy`.
    """
    return -F.binary_cross_entropy(p, x, reduction="none")


def log_normal(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Log-density of ``x`` under a Gaussian with mean ``mean`` and variance ``var``."""
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


__all__ = ["log_bernoulli", "log_nb", "log_nb_mixture", "log_normal", "log_zinb"]
