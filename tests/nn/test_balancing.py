"""Loss balancers against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from mmint.errors import InputError
from mmint.nn.balancing import (
    DWA,
    GradNorm,
    PCGrad,
    Uncertainty,
    dwa_weights,
    make_balancer,
    project_conflicts,
)


def _backward(loss: torch.Tensor) -> None:
    loss.backward()


def test_fixed_is_the_plain_sum():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    bal = make_balancer("fixed", ["a", "b"])
    total = bal.backward({"a": (p**2).sum(), "b": 3 * p[0]}, [p], _backward)
    assert total.item() == pytest.approx(5.0 + 3.0)
    torch.testing.assert_close(p.grad, torch.tensor([2.0 + 3.0, 4.0]))
    assert bal.weights() == {"a": 1.0, "b": 1.0}


def test_uncertainty_total_gradients_and_weights():
    bal = Uncertainty(["a", "b"], lr=0.1)
    with torch.no_grad():
        bal.log_vars.copy_(torch.tensor([0.0, math.log(2.0)]))
    p = torch.nn.Parameter(torch.tensor(1.0))
    terms = {"a": p * 1.0, "b": p * 4.0}  # L = (1, 4) at p = 1
    total = bal.backward(terms, [p], _backward)
    # 0.5 e^0 1 + 0 + 0.5 (1/2) 4 + 0.5 log 2
    assert total.item() == pytest.approx(0.5 + 1.0 + 0.5 * math.log(2.0))
    # d/ds_k = -0.5 e^-s_k L_k + 0.5
    torch.testing.assert_close(bal.log_vars.grad, torch.tensor([0.0, -0.5]))
    # d/dp = 0.5 * 1 + 0.25 * 4
    assert p.grad.item() == pytest.approx(1.5)
    assert bal.weights() == pytest.approx({"a": 0.5, "b": 0.25})
    bal.after_step()  # Adam's first step moves each s with a nonzero gradient by lr
    torch.testing.assert_close(
        bal.log_vars.detach(), torch.tensor([0.0, math.log(2.0) + 0.1]), atol=1e-6, rtol=0
    )


def test_pcgrad_projects_two_conflicting_gradients_by_hand():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    out = project_conflicts(g, order=[[1], [0]])
    # g1 . g2 = -1 < 0: g1 - (-1 / |g2|^2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)
    # g2 - (-1 / |g1|^2) g1 = (-1, 1) + (1, 0) = (0, 1)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))


def test_pcgrad_leaves_agreeing_gradients_alone():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(project_conflicts(g), g)


def test_pcgrad_backward_sets_the_projected_sum():
    p = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    terms = {"a": p @ torch.tensor([1.0, 0.0]), "b": p @ torch.tensor([-1.0, 1.0])}
    PCGrad(["a", "b"]).backward(terms, [p], _backward)
    torch.testing.assert_close(p.grad, torch.tensor([0.5, 1.5]))


def test_dwa_weights_by_hand_and_over_epochs():
    before, last = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.0])
    # r = (0.5, 1); w_k = 2 exp(r_k / 2) / (exp(0.25) + exp(0.5))
    want = 2 * torch.tensor([math.exp(0.25), math.exp(0.5)]) / (math.exp(0.25) + math.exp(0.5))
    torch.testing.assert_close(dwa_weights(before, last, 2.0), want)
    bal = DWA(["a", "b"], temperature=2.0)
    p = torch.nn.Parameter(torch.tensor(1.0))
    for means in (before, last):
        for _ in range(3):  # three steps per epoch with the same losses
            bal.backward({"a": p * means[0], "b": p * means[1]}, [p], _backward)
        assert bal.weights() == {"a": 1.0, "b": 1.0}  # weights of the epoch just run
        bal.end_epoch()
    assert list(bal.weights().values()) == pytest.approx(want.tolist())
    p.grad = None
    bal.backward({"a": p * 1.0, "b": p * 1.0}, [p], _backward)
    assert p.grad.item() == pytest.approx(float(want.sum()))


def test_gradnorm_weight_gradient_by_hand():
    # shared parameter W (scalar); L_a = W^2 (dL/dW = 2W), L_b = 3W (dL/dW = 3)
    w_shared = torch.nn.Parameter(torch.tensor(1.0))
    bal = GradNorm(["a", "b"], [w_shared], alpha=1.0, lr=0.1)
    terms = {"a": w_shared**2, "b": 3 * w_shared}
    bal.backward(terms, [w_shared], _backward)
    # first step: L(0) = L, so r = (1, 1); G = (|w_a 2W|, |w_b 3|) = (2, 3); target = 2.5
    # L_grad = |2 w_a - 2.5| + |3 w_b - 2.5|; d/dw_a = 2 sign(-0.5) = -2, d/dw_b = 3
    torch.testing.assert_close(bal.loss_weights.grad, torch.tensor([-2.0, 3.0]))
    assert w_shared.grad.item() == pytest.approx(2.0 + 3.0)  # the model sees w = (1, 1)
    bal.after_step()
    w = bal.loss_weights.detach()
    assert w.sum().item() == pytest.approx(2.0)  # renormalised to the number of terms
    assert w[0] > 1.0 > w[1]  # the term with the smaller gradient norm gains weight


def test_gradnorm_rates_follow_the_loss_ratios():
    w_shared = torch.nn.Parameter(torch.tensor(1.0))
    bal = GradNorm(["a", "b"], [w_shared], alpha=1.0)
    bal.backward({"a": w_shared * 2.0, "b": w_shared * 2.0}, [w_shared], _backward)
    bal.after_step()
    with torch.no_grad():
        bal.loss_weights.copy_(torch.tensor([1.0, 1.0]))
    # now L = (1, 2) against L(0) = (2, 2): ratios (0.5, 1), rates (2/3, 4/3)
    bal.backward({"a": w_shared * 1.0, "b": w_shared * 2.0}, [w_shared], _backward)
    # G = (1, 2), mean 1.5, target = (1, 2): |G - target| = 0 -> zero gradient
    torch.testing.assert_close(bal.loss_weights.grad, torch.tensor([0.0, 0.0]))


def test_balancer_state_round_trips():
    bal = Uncertainty(["a", "b"])
    p = torch.nn.Parameter(torch.tensor(1.0))
    bal.backward({"a": p * 1.0, "b": p * 2.0}, [p], _backward)
    bal.after_step()
    other = Uncertainty(["a", "b"])
    other.load_state_dict(bal.state_dict())
    torch.testing.assert_close(other.log_vars, bal.log_vars)
    assert other.opt.state_dict()["state"][0]["step"] == 1


def test_unknown_method_is_an_input_error():
    with pytest.raises(InputError, match="unknown loss balancing 'magic'"):
        make_balancer("magic", ["a"])
    with pytest.raises(InputError, match="gradnorm needs the shared parameters"):
        make_balancer("gradnorm", ["a"])


def test_an_absent_term_moves_no_learned_weight():
    p = torch.nn.Parameter(torch.tensor(1.0))
    unc = Uncertainty(["a", "b"])
    total = unc.backward({"a": p * 2.0}, [p], _backward)
    assert total.item() == pytest.approx(0.5 * 2.0)  # no 0.5 s_b, no 0.5 e^0 * 0
    torch.testing.assert_close(unc.log_vars.grad, torch.tensor([-0.5 * 2.0 + 0.5, 0.0]))
    shared = torch.nn.Parameter(torch.tensor(1.0))
    gn = GradNorm(["a", "b"], [shared], alpha=1.0)
    gn.backward({"a": shared * 2.0}, [shared], _backward)
    assert math.isnan(gn.initial[1].item())  # b's first value is the first one it has
    torch.testing.assert_close(gn.loss_weights.grad, torch.tensor([0.0, 0.0]))
    gn.backward({"a": shared * 2.0, "b": shared * 4.0}, [shared], _backward)
    assert gn.initial.tolist() == [2.0, 4.0]


def test_dwa_epoch_means_count_the_steps_a_term_has():
    bal = DWA(["a", "b"], temperature=1.0)
    p = torch.nn.Parameter(torch.tensor(1.0))
    for b_values in ([2.0, None], [1.0, 1.0]):  # epoch 1: b in one step of two
        for b in b_values:
            bal.backward({"a": p * 1.0, **({} if b is None else {"b": p * b})}, [p], _backward)
        bal.end_epoch()
    # means: a (1, 1), b (2, 1): r = (1, 0.5); w = 2 softmax(r)
    want = 2 * torch.softmax(torch.tensor([1.0, 0.5]), 0)
    assert list(bal.weights().values()) == pytest.approx(want.tolist())
