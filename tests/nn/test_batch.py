"""Batch covariates and the adversarial batch classifier."""

from __future__ import annotations

import torch

from mmint.nn.batch import BatchAdversary, batch_one_hot


def test_one_hot_and_held_out_batches_get_the_seen_mix():
    codes = torch.tensor([0, 2, 1, 2])
    plain = batch_one_hot(codes, 3)
    assert torch.equal(plain, torch.eye(3)[codes])
    # batch 2 has no training cells: its cells get the mean of the seen batches' columns
    seen = torch.tensor([True, True, False])
    mixed = batch_one_hot(codes, 3, seen)
    expected = torch.tensor([[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0.5, 0.5, 0]])
    torch.testing.assert_close(mixed, expected)
    assert torch.equal(batch_one_hot(codes, 3, torch.ones(3, dtype=torch.bool)), plain)


def test_adversary_loss_by_hand():
    torch.manual_seed(0)
    adv = BatchAdversary(n_latent=4, n_batches=3).eval()
    z, codes = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    logp = torch.log_softmax(adv.net(z), -1)
    true = -logp[torch.arange(5), codes].mean()
    others = torch.stack([logp[i, [c for c in range(3) if c != codes[i]]].mean() for i in range(5)])
    torch.testing.assert_close(adv.loss(z, codes, fool=False), true)
    torch.testing.assert_close(adv.loss(z, codes, fool=True), -others.mean())
