"""Sparse inputs into the first layer (mmint.nn.sparse) and the sparse Bernoulli likelihood
against their dense counterparts through torch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from mmint.nn.likelihoods import log_bernoulli, log_bernoulli_factors
from mmint.nn.mlp import MLP
from mmint.nn.optim import adam
from mmint.nn.projection import InputProjection, centred_svd_lowrank
from mmint.nn.sparse import csr_tensor, feature_major_, scipy_csr, sparse_linear

F64 = torch.float64


def _sparse(n: int = 12, p: int = 50, density: float = 0.1, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = sp.random(n, p, density=density, format="csr", random_state=rng, dtype=np.float32)
    x.data = rng.poisson(3.0, x.nnz).astype(np.float32) + 1.0
    x = x.tolil()
    x[3] = 0  # an empty row
    return x.tocsr()


def test_csr_round_trip():
    x = _sparse()
    t = csr_tensor(x)
    assert t.layout == torch.sparse_csr
    np.testing.assert_array_equal(t.to_dense().numpy(), x.toarray())
    np.testing.assert_array_equal(scipy_csr(t).toarray(), x.toarray())


def test_sparse_linear_matches_dense_values_and_gradients():
    x = _sparse()
    torch.manual_seed(0)
    w = torch.randn(7, 50, requires_grad=True)
    b = torch.randn(7, requires_grad=True)
    up = torch.randn(12, 7)
    got = sparse_linear(csr_tensor(x), w, b)
    (got * up).sum().backward()
    gw, gb = w.grad.clone(), b.grad.clone()
    w.grad = b.grad = None
    want = F.linear(torch.from_numpy(x.toarray()), w, b)
    (want * up).sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(gw, w.grad, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(gb, b.grad, rtol=1e-6, atol=1e-5)
    assert got[3].sub(b).abs().max() == 0  # an empty row gives the bias


def test_feature_major_mlp_and_fused_adam_match_a_plain_one():
    torch.manual_seed(0)
    plain = MLP(50, [16], 4)
    fm = MLP(50, [16], 4, sparse_input=True)
    fm.load_state_dict(plain.state_dict())
    first = fm.net[0].weight
    assert first.t().is_contiguous() and not first.is_contiguous()
    x = _sparse()
    dense = torch.from_numpy(x.toarray())
    opts = [torch.optim.Adam(plain.parameters(), lr=1e-2), adam(fm.parameters(), lr=1e-2)]
    for _ in range(3):
        for net, opt, inp in ((plain, opts[0], dense), (fm, opts[1], csr_tensor(x))):
            opt.zero_grad()
            net(inp).square().sum().backward()
            opt.step()
    assert not fm.net[0].weight.is_contiguous()  # the step kept the layout
    for (name, a), b in zip(plain.state_dict().items(), fm.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def _bernoulli_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 9, generator=g, dtype=F64) * 3
    a[0, 0] = 60.0  # p rounds to 1: the clamped log branch
    c = torch.rand(6, 1, generator=g, dtype=F64) * 0.9 + 0.05
    r = torch.randn(9, generator=g, dtype=F64)
    x = (torch.rand(6, 9, generator=g, dtype=F64) < 0.3).to(F64)
    x[0, 0] = 0.0
    return x, a, c, r


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_bernoulli_factors_match_autograd(layout):
    x, a, c, r = _bernoulli_inputs()
    up = torch.randn(6, dtype=F64)
    leaves = [t.clone().requires_grad_() for t in (a, c, r)]
    p = torch.sigmoid(leaves[0]) * leaves[1] * torch.sigmoid(leaves[2])
    want = log_bernoulli(x, p).sum(-1)
    (want * up).sum().backward()
    want_grads = [t.grad for t in leaves]
    inp = x if layout == "dense" else x.to_sparse_csr()
    mine = [t.clone().requires_grad_() for t in (a, c, r)]
    got = log_bernoulli_factors(inp, *mine)
    (got * up).sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip((t.grad for t in mine), want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


def test_centred_svd_lowrank_matches_torch():
    x = _sparse(n=40, p=120, density=0.2)
    dense = torch.from_numpy(x.toarray()).double()
    mean = dense.mean(0)
    torch.manual_seed(0)
    want = torch.svd_lowrank(dense - mean, q=6, niter=2)[2]
    torch.manual_seed(0)
    got = centred_svd_lowrank(csr_tensor(x).to(F64), mean, q=6, niter=2)
    torch.testing.assert_close(got.abs(), want.abs(), rtol=1e-8, atol=1e-8)


def test_projection_fit_sparse_matches_dense():
    x = _sparse(n=60, p=4200, density=0.01)
    dense_proj, sparse_proj = InputProjection(4200, 5), InputProjection(4200, 5)
    dense_proj.fit(torch.from_numpy(x.toarray()))
    sparse_proj.fit(csr_tensor(x))
    for key in ("mean", "components", "variance"):
        torch.testing.assert_close(
            getattr(sparse_proj, key), getattr(dense_proj, key), rtol=1e-4, atol=1e-5, msg=key
        )
    # the forward of one projection on the same rows, sparse and dense
    torch.testing.assert_close(
        sparse_proj(csr_tensor(x)), sparse_proj(torch.from_numpy(x.toarray())), rtol=1e-5, atol=1e-5
    )


def test_feature_major_keeps_values():
    layer = nn.Linear(5, 3)
    before = layer.weight.detach().clone()
    feature_major_(layer)
    assert torch.equal(layer.weight, before) and layer.weight.t().is_contiguous()
