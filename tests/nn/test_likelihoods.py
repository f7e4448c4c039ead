"""Log-probabilities of mmint.nn.likelihoods against scipy / torch.distributions / by hand."""

import numpy as np
import pytest
import torch
from scipy import stats

from mmint.nn.likelihoods import log_bernoulli, log_nb, log_nb_mixture, log_normal, log_zinb

F64 = torch.float64  # exact comparisons


def _data(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    mu = rng.gamma(1.0, 5.0, n) + 1e-3
    theta = rng.gamma(2.0, 2.0, n) + 1e-2
    x = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    x[:20] = 0.0  # make sure zeros are covered
    return x, mu, theta


def _nb_scipy(x, mu, theta):
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


def test_nb_matches_scipy():
    x, mu, theta = _data()
    got = log_nb(torch.tensor(x), torch.tensor(mu), torch.tensor(theta), eps=0.0).numpy()
    np.testing.assert_allclose(got, _nb_scipy(x, mu, theta), rtol=1e-9, atol=1e-9)


def test_nb_sums_to_one():
    mu, theta = torch.tensor(3.5, dtype=F64), torch.tensor(0.7, dtype=F64)
    x = torch.arange(0, 2000, dtype=F64)
    assert torch.logsumexp(log_nb(x, mu, theta, eps=0.0), 0).exp().item() == pytest.approx(
        1, abs=1e-8
    )


def test_zinb_by_hand():
    x, mu, theta = _data(1)
    logits = np.random.default_rng(2).normal(size=x.shape)
    pi = 1 / (1 + np.exp(-logits))
    nb = np.exp(_nb_scipy(x, mu, theta))
    want = np.log(np.where(x == 0, pi + (1 - pi) * nb, (1 - pi) * nb))
    got = log_zinb(
        torch.tensor(x), torch.tensor(mu), torch.tensor(theta), torch.tensor(logits), eps=0.0
    ).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_nb_mixture_by_hand():
    x, mu, theta = _data(3)
    rng = np.random.default_rng(4)
    mu2 = mu * (1 + rng.gamma(2.0, 2.0, x.shape))
    theta2 = theta * 2
    logits = rng.normal(size=x.shape)
    w = 1 / (1 + np.exp(-logits))
    t = torch.tensor
    # shared dispersion
    want = np.log(w * np.exp(_nb_scipy(x, mu, theta)) + (1 - w) * np.exp(_nb_scipy(x, mu2, theta)))
    got = log_nb_mixture(t(x), t(mu), t(mu2), t(theta), t(logits), eps=0.0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # separate dispersions
    want2 = np.log(
        w * np.exp(_nb_scipy(x, mu, theta)) + (1 - w) * np.exp(_nb_scipy(x, mu2, theta2))
    )
    got2 = log_nb_mixture(t(x), t(mu), t(mu2), t(theta), t(logits), t(theta2), eps=0.0).numpy()
    np.testing.assert_allclose(got2, want2, rtol=1e-9, atol=1e-9)


def test_bernoulli_matches_torch():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(300, generator=g, dtype=F64).clamp(1e-4, 1 - 1e-4)
    x = (torch.rand(300, generator=g, dtype=F64) < 0.3).double()
    want = torch.distributions.Bernoulli(probs=p).log_prob(x)
    torch.testing.assert_close(log_bernoulli(x, p), want)


def test_normal_matches_torch():
    g = torch.Generator().manual_seed(1)
    x, mean = (
        torch.randn(100, 5, generator=g, dtype=F64),
        torch.randn(100, 5, generator=g, dtype=F64),
    )
    var = torch.rand(5, generator=g, dtype=F64) + 0.1
    want = torch.distributions.Normal(mean, var.sqrt()).log_prob(x)
    torch.testing.assert_close(log_normal(x, mean, var), want)
