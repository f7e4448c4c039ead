"""Tests of the EMA vector quantiser against hand computations."""

import math

import pytest
import torch

from mmint.nn.vq import VectorQuantizerEMA, perplexity


def _vq(decay: float = 0.9, eps: float = 0.1, **kw) -> VectorQuantizerEMA:
    vq = VectorQuantizerEMA(n_codes=3, dim=2, decay=decay, eps=eps, **kw)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    return vq


def test_codebook_is_a_buffer_not_a_parameter():
    vq = VectorQuantizerEMA(8, 4)
    assert list(vq.parameters()) == []
    assert {"codebook", "ema_size_hidden", "ema_sum_hidden", "ema_steps"} <= set(vq.state_dict())


def test_ema_update_matches_hand_computation():
    vq = _vq().train()
    # step 1: rows 0, 1 go to code 0 and row 2 to code 1; code 2 is unused
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]])
    out = vq(z1)
    assert out.indices.tolist() == [0, 0, 1]
    # the returned codes come from the codebook before the step
    assert torch.allclose(out.quantized, torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0]]))
    # hidden = 0.1 * counts; bias correction 1 - 0.9 = 0.1 gives back the counts [2, 1, 0]
    assert torch.allclose(vq.ema_size_hidden, torch.tensor([0.2, 0.1, 0.0]))
    assert torch.allclose(vq.cluster_size, torch.tensor([2.0, 1.0, 0.0]))
    assert torch.allclose(vq.ema_sum_hidden, torch.tensor([[0.1, 0.1], [0.9, 0.1], [0.0, 0.0]]))
    # Laplace smoothing: (size + eps) / (n + K eps) * n with n = 3, K = 3, eps = 0.1
    smoothed = [2.1 / 3.3 * 3, 1.1 / 3.3 * 3, 0.1 / 3.3 * 3]
    expected = torch.tensor(
        [[1 / smoothed[0], 1 / smoothed[0]], [9 / smoothed[1], 1 / smoothed[1]], [0.0, 0.0]]
    )
    assert torch.allclose(vq.codebook, expected, atol=1e-6)

    # step 2: [9, 1] -> code 1, [1, 1] -> code 0
    z2 = torch.tensor([[9.0, 1.0], [1.0, 1.0]])
    assert vq(z2).indices.tolist() == [1, 0]
    hidden = [0.9 * 0.2 + 0.1 * 1, 0.9 * 0.1 + 0.1 * 1, 0.0]  # [0.28, 0.19, 0]
    corr = 1 - 0.9**2
    size = [h / corr for h in hidden]
    n = sum(size)
    smooth = [(s + 0.1) / (n + 0.3) * n for s in size]
    # summed vectors: 0.9 * 0.1 * s1 + 0.1 * s2 with s1 == s2 == [[1, 1], [9, 1], [0, 0]]
    sums = [[0.19 * 1, 0.19 * 1], [0.19 * 9, 0.19 * 1], [0.0, 0.0]]
    expected = torch.tensor([[v / corr / smooth[k] for v in sums[k]] for k in range(3)])
    assert int(vq.ema_steps) == 2
    assert torch.allclose(vq.cluster_size, torch.tensor(size), atol=1e-6)
    assert torch.allclose(vq.codebook, expected, atol=1e-5)


def test_no_update_in_eval_mode_or_when_disabled():
    vq = _vq()
    before = vq.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    z = torch.tensor([[1.0, 0.0], [9.0, 1.0]])
    vq.eval()(z)
    vq.train()(z, update=False)
    for k, v in vq.state_dict().items():
        assert torch.equal(v, before[k]), k
    vq.eval()(z, update=True)
    assert int(vq.ema_steps) == 1


def test_straight_through_gradient_is_identity():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(n_codes=5, dim=3).eval()
    z = torch.randn(4, 3, requires_grad=True)
    out = vq(z)
    # value: the nearest codebook rows
    d = torch.cdist(z.detach(), vq.codebook)
    assert torch.equal(out.indices, d.argmin(1))
    assert torch.allclose(out.quantized, vq.codebook[out.indices])
    jac = torch.autograd.functional.jacobian(lambda t: vq(t).quantized, z.detach())
    assert torch.allclose(jac.reshape(12, 12), torch.eye(12))


def test_commitment_loss_value_and_gradient():
    vq = _vq(commitment=0.25).eval()
    z = torch.tensor([[1.0, 2.0], [8.0, -1.0]], requires_grad=True)
    out = vq(z)
    e = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    sq = (1**2 + 2**2) + (2**2 + 1**2)  # squared distances to the chosen codes
    assert out.commitment_loss.item() == pytest.approx(0.25 * sq / 4)
    out.commitment_loss.backward()
    # only the encoder side gets the gradient: d/dz beta * mean((z - e)^2) = 2 beta (z - e) / 4
    assert torch.allclose(z.grad, 2 * 0.25 * (z.detach() - e) / 4)


def test_perplexity_formula():
    p = [0.5, 0.25, 0.25]
    expected = math.exp(-sum(q * math.log(q) for q in p))
    assert perplexity(torch.tensor([0, 0, 1, 2]), 4).item() == pytest.approx(expected, rel=1e-5)
    assert perplexity(torch.tensor([3, 3, 3]), 4).item() == pytest.approx(1.0)
    assert perplexity(torch.arange(8), 8).item() == pytest.approx(8.0, rel=1e-5)


def test_dead_codes_use_the_ema_cluster_size():
    vq = _vq(dead_threshold=0.5).train()
    assert vq.dead_codes() == 3  # nothing assigned yet
    vq(torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]]))  # sizes [2, 1, 0]
    assert vq.dead_codes() == 1
    for _ in range(30):  # only code 2 used from now on: codes 0 and 1 decay by 0.9 a step
        vq.ema_update(torch.tensor([[0.1, 0.0], [0.0, 0.1]]), torch.tensor([2, 2]))
    assert vq.cluster_size[1].item() == pytest.approx(0.1 * 0.9**30 / (1 - 0.9**31), rel=1e-4)
    assert vq.dead_codes() == 2


def test_state_round_trip_keeps_bias_correction():
    vq = _vq().train()
    vq(torch.tensor([[1.0, 0.0], [9.0, 1.0]]))
    other = VectorQuantizerEMA(n_codes=3, dim=2, decay=0.9, eps=0.1)
    other.load_state_dict(vq.state_dict())
    assert int(other.ema_steps) == 1
    assert torch.allclose(other.cluster_size, vq.cluster_size)
