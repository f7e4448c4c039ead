"""UnitedNet's all-heads-at-once computations against the one-head modules and functions
(torch's Linear / LayerNorm / cross_entropy, and the per-head losses checked by hand in
test_unitednet.py), and the stacked decoder call against separate calls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmint.models.unitednet.losses as L
from mmint.models.unitednet.batched import call_stacked, frozen, row_independent
from mmint.models.unitednet.group_heads import GroupHead, stacked_heads
from mmint.nn.mlp import MLP

H, B, M, D, P, K = 4, 12, 3, 5, 7, 6


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("norm", [True, False])
def test_stacked_heads_equal_each_head(per_feature, norm):
    torch.manual_seed(0)
    heads = nn.ModuleList(GroupHead(M, D, K, P, per_feature, norm) for _ in range(H))
    for head in heads:  # not the equal initial fuser weights: a wrong axis would show
        nn.init.normal_(head.fuser.theta)
        if norm:
            nn.init.normal_(head.projector[1].weight)
            nn.init.normal_(head.projector[1].bias)
    z, mask = torch.randn(B, M, D), (torch.rand(B, M) > 0.3).float()
    fused, hidden, logits = stacked_heads(heads, z, mask)
    for h, head in enumerate(heads):
        f, hd, lg = head(z, mask)
        torch.testing.assert_close(fused[h], f)
        torch.testing.assert_close(hidden[h], hd)
        torch.testing.assert_close(logits[h], lg)


def test_losses_over_heads_equal_per_head_losses():
    torch.manual_seed(1)
    logits, hidden = torch.randn(H, B, K), torch.randn(H, B, P)
    probs = torch.softmax(logits, -1)
    labels = torch.randint(-1, K, (B,))
    weights = torch.rand(K) + 0.5
    ddc, ent = L.ddc_loss(probs, hidden), L.self_entropy_loss(probs)
    ce = L.cross_entropy_loss(logits, labels, weights)
    assert ddc.shape == ent.shape == ce.shape == (H,)
    for h in range(H):
        torch.testing.assert_close(ddc[h], L.ddc_loss(probs[h], hidden[h]))
        torch.testing.assert_close(ent[h], L.self_entropy_loss(probs[h]))
        keep = labels >= 0
        torch.testing.assert_close(
            ce[h], F.cross_entropy(logits[h][keep], labels[keep], weight=weights)
        )
    unlabelled = L.cross_entropy_loss(logits, torch.full((B,), -1), None)
    assert unlabelled.shape == (H,) and float(unlabelled.abs().sum()) == 0


def test_stacked_decoder_call_and_frozen_parameters():
    torch.manual_seed(2)
    net = MLP(4, [8], 3)
    parts = [torch.randn(5, 4), torch.randn(2, 4), torch.randn(6, 4)]
    for got, x in zip(call_stacked(net, parts), parts, strict=True):
        torch.testing.assert_close(got, net(x))
    dropping = MLP(4, [8], 3, dropout=0.5)
    assert row_independent(net) and not row_independent(dropping)
    assert row_independent(dropping.eval())
    x = torch.randn(3, 4, requires_grad=True)
    with frozen(net):
        net(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())
