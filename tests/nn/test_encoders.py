"""Residual MLP and variational latent against hand computations and torch.distributions."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from mmint.nn.encoders import ResidualBlock, ResidualMLP, VariationalLatent, gaussian_kl
from mmint.nn.mlp import MLP


def _blocks(net: ResidualMLP) -> list[ResidualBlock]:
    return [layer for layer in net.net if isinstance(layer, ResidualBlock)]


def test_residual_mlp_shapes_and_skips():
    net = ResidualMLP(10, [8, 8, 6], 4, out_norm="layer")
    blocks = _blocks(net)
    assert len(blocks) == 2
    assert isinstance(blocks[0].skip, nn.Identity)  # 8 -> 8
    assert isinstance(blocks[1].skip, nn.Linear) and blocks[1].skip.bias is None  # 8 -> 6
    assert net(torch.randn(5, 10)).shape == (5, 4)
    assert net.net[0].in_features == 10  # the explain hooks read the input width there


def test_block_is_its_skip_when_the_branch_weights_are_zero():
    torch.manual_seed(0)
    x = torch.randn(7, 6)
    same = ResidualBlock(6, 6, layer_norm=True)
    down = ResidualBlock(6, 3, batch_norm=True)
    for block in (same, down):
        nn.init.zeros_(block.branch[0].weight)
        nn.init.zeros_(block.branch[0].bias)
    torch.testing.assert_close(same(x), x)
    down.eval()
    torch.testing.assert_close(down(x), x @ down.skip.weight.T)


def test_block_by_hand():
    block = ResidualBlock(2, 2)
    with torch.no_grad():
        block.branch[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.5]]))
        block.branch[0].bias.copy_(torch.tensor([0.0, -1.0]))
    x = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
    # row 1: W x + b = (-1, 2), relu (0, 2), + x = (1, 4); row 2: (5, 4) -> (8, 2)
    torch.testing.assert_close(block(x), torch.tensor([[1.0, 4.0], [8.0, 2.0]]))


def test_whole_residual_mlp_with_zero_branches_is_first_skip_and_output_layers():
    torch.manual_seed(1)
    net = ResidualMLP(5, [4, 4, 4], 3, dropout=0.3).eval()
    for block in _blocks(net):
        nn.init.zeros_(block.branch[0].weight)
        nn.init.zeros_(block.branch[0].bias)
    first, out = net.net[0], [m for m in net.net if isinstance(m, nn.Linear)][-1]
    x = torch.randn(6, 5)
    expected = out(torch.relu(first(x)))
    torch.testing.assert_close(net(x), expected)


def test_residual_with_one_hidden_layer_is_the_plain_mlp():
    torch.manual_seed(2)
    a = ResidualMLP(5, [4], 3, out_norm="layer")
    torch.manual_seed(2)
    b = MLP(5, [4], 3, out_norm="layer")
    x = torch.randn(3, 5)
    torch.testing.assert_close(a(x), b(x))
    assert not _blocks(a)


def test_residual_mlp_sparse_input_matches_dense():
    torch.manual_seed(3)
    net = ResidualMLP(6, [4, 4], 2, sparse_input=True)
    dense = (torch.rand(5, 6) > 0.6).float()
    torch.testing.assert_close(net(dense.to_sparse_csr()), net(dense), atol=1e-6, rtol=1e-5)


def test_residual_dropout_first_only_keeps_blocks_deterministic():
    net = ResidualMLP(5, [4, 4], 2, dropout=0.5, dropout_first_only=True)
    assert all(
        not isinstance(m, nn.Dropout) for block in _blocks(net) for m in block.branch.modules()
    )
    assert any(isinstance(m, nn.Dropout) for m in net.net[:3])
    with pytest.raises(ValueError, match="single output"):
        ResidualMLP(5, [4, 4], 1, out_norm="layer")


def test_variational_latent_sampling_and_eval():
    torch.manual_seed(4)
    lat = VariationalLatent(3)
    nn.init.normal_(lat.log_var.weight)
    h = torch.randn(4, 3)
    gen = torch.Generator().manual_seed(11)
    z, mu, log_var = lat(h, gen)
    eps = torch.randn(h.shape, generator=torch.Generator().manual_seed(11))
    expected_lv = h @ lat.log_var.weight.T + lat.log_var.bias
    torch.testing.assert_close(mu, h)
    torch.testing.assert_close(log_var, expected_lv)
    torch.testing.assert_close(z, h + torch.exp(0.5 * expected_lv) * eps)
    lat.eval()
    z_eval, _, _ = lat(h)
    torch.testing.assert_close(z_eval, h)


def test_variational_latent_starts_with_a_small_uniform_variance():
    lat = VariationalLatent(2)
    _, _, log_var = lat(torch.randn(3, 2))
    torch.testing.assert_close(log_var, torch.full((3, 2), -4.0))


def test_kl_against_torch_distributions():
    torch.manual_seed(5)
    mu, log_var = torch.randn(6, 4), torch.randn(6, 4)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).mean()
    torch.testing.assert_close(gaussian_kl(mu, log_var), ref)
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0.0


def test_reparameterisation_gradient_by_hand():
    lat = VariationalLatent(2)
    h = torch.tensor([[0.5, -1.0], [2.0, 0.0]], requires_grad=True)
    z, _, log_var = lat(h, torch.Generator().manual_seed(7))
    eps = torch.randn(2, 2, generator=torch.Generator().manual_seed(7))
    z.sum().backward()
    # dz/dmu = 1 (the log-variance's weights are zero at start); dz/d(bias_j) = sum_i
    # 0.5 sigma_ij eps_ij
    torch.testing.assert_close(h.grad, torch.ones(2, 2))
    sigma = torch.exp(0.5 * log_var.detach())
    torch.testing.assert_close(lat.log_var.bias.grad, (0.5 * sigma * eps).sum(0))
    torch.testing.assert_close(lat.log_var.weight.grad, (0.5 * sigma * eps).T @ h.detach())
