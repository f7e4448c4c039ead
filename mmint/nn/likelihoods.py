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

from mmint.nn.sparse import csr_parts, is_sparse, nnz_rows

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


_BCE_EPS = 1e-12  # floor of p (1 - p) in the gradient, as binary_cross_entropy's backward
_LOG_FLOOR = -100.0  # binary_cross_entropy's clamp of its log terms


def positive_entries(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(rows, cols)`` of the entries of ``x`` above 0 (``x`` dense or sparse CSR/COO)."""
    if is_sparse(x):
        crow, col, values = csr_parts(x)
        keep = values > 0
        return nnz_rows(crow)[keep], col[keep]
    rows, cols = (x > 0).nonzero(as_tuple=True)
    return rows, cols


class _FactorBernoulliRows(torch.autograd.Function):
    """Per-row sum of ``log Bernoulli(x; p)`` with ``p = sigmoid(a) * c * sigmoid(r)``.

    Forward: ``sum_j log(1 - p_ij) + sum_(ones) [log p - log(1 - p)]``, one dense pass over
    ``p`` plus the ones (a dense 0/1 target is never built). Backward in a few dense passes,
    through ``m = p * dlogL/dp``: ``da = m (1 - s)``, ``dc = sum_j m / c``,
    ``dr = sum_i m (1 - sigmoid(r))``. Values and gradient are those of
    ``-binary_cross_entropy(p, x, reduction="none").sum(-1)`` through autograd (logs clamped
    at -100, ``dlogL/dp = (x - p) / max(p (1 - p), 1e-12)``), up to float rounding.
    """

    @staticmethod
    def forward(ctx, a: Tensor, c: Tensor, r: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        s = torch.sigmoid(a)
        sr = torch.sigmoid(r)
        p = torch.mul(s, c).mul_(sr)
        log_q = torch.neg(p).log1p_().clamp_min_(_LOG_FLOOR)
        total = log_q.sum(-1)
        p_one = p[rows, cols]
        gain = torch.log(p_one).clamp_min_(_LOG_FLOOR) - log_q[rows, cols]
        total.index_add_(0, rows, gain)
        ctx.save_for_backward(s, p, c, sr, rows, cols, p_one)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        s, p, c, sr, rows, cols, p_one = ctx.saved_tensors
        # m = p dlogL/dp: -p^2 / max(p (1 - p), eps) for x = 0, p (1 - p) / max(...) for x = 1
        den = torch.rsub(p, 1.0).mul_(p).clamp_min_(_BCE_EPS)
        m = torch.mul(p, p).div_(den).mul_(grad.neg().unsqueeze(-1))
        del den
        var_one = (1.0 - p_one) * p_one
        m[rows, cols] = var_one / var_one.clamp_min(_BCE_EPS) * grad[rows]
        da = dc = dr = None
        if ctx.needs_input_grad[1]:
            dc = m.sum(-1, keepdim=True) / c.clamp_min(torch.finfo(c.dtype).tiny)
        if ctx.needs_input_grad[2]:
            dr = m.sum(0) * (1.0 - sr)
        if ctx.needs_input_grad[0]:
            da = m.mul_(torch.rsub(s, 1.0))
        return da, dc, dr, None, None


def log_bernoulli_factors(x: Tensor, logits: Tensor, cell: Tensor, region_logits: Tensor) -> Tensor:
    """Per-row sum over features of :func:`log_bernoulli` with targets ``x > 0`` and success
    probability ``sigmoid(logits) * cell * sigmoid(region_logits)`` (MultiVI's peaks).

    Parameters
    ----------
    x
        Observations ``(n, p)``, dense or sparse (only the positions of its ones are used).
    logits
        ``(n, p)`` logits of the latent's probability.
    cell
        ``(n, 1)`` cell factors in (0, 1).
    region_logits
        ``(p,)`` logits of the region factors.
    """
    rows, cols = positive_entries(x)
    return _FactorBernoulliRows.apply(logits, cell, region_logits, rows, cols)


def log_normal(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Log-density of ``x`` under a Gaussian with mean ``mean`` and variance ``var``."""
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


__all__ = [
    "log_bernoulli",
    "log_bernoulli_factors",
    "log_nb",
    "log_nb_mixture",
    "log_normal",
    "log_zinb",
    "positive_entries",
]
