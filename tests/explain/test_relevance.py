"""shap wrapper: DeepExplainer additivity, fallback to GradientExplainer, zero relevance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mmint.errors import InputError
from mmint.explain.relevance import (
    Groups,
    choose_dst_features,
    deep_supported,
    modality_pairs,
    shap_values,
)
from mmint.explain.subnets import Columns
from mmint.nn.mlp import MLP

torch.set_num_threads(1)


def _mlp(layer_norm: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = MLP(6, [16, 8], 3, activation="relu", batch_norm=not layer_norm, layer_norm=layer_norm)
    net.train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for _ in range(5):
            net(torch.randn(64, 6) * 2 + 1)
    return net.eval()


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 6)).astype(np.float32)


def test_deep_explainer_is_additive_on_batchnorm_relu_mlp():
    net = _mlp()
    x, bg = _data(7, 1), _data(20, 2)
    res = shap_values(net, x, bg)
    assert res.explainer == "deep" and res.reason == ""
    assert res.values.shape == (7, 6, 3)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).double().numpy()
        expected = net(torch.from_numpy(bg)).double().mean(0).numpy()
    np.testing.assert_allclose(res.values.sum(axis=1) + expected, out, atol=1e-5)
    assert res.additivity_error < 1e-5
    np.testing.assert_allclose(res.importance(), np.abs(res.values).mean(axis=0))


def test_layernorm_falls_back_to_gradient_explainer_and_records_why():
    net = _mlp(layer_norm=True)
    assert deep_supported(net) == (False, "DeepExplainer has no rule for LayerNorm")
    res = shap_values(net, _data(4, 1), _data(10, 2), nsamples=20)
    assert res.explainer == "gradient"
    assert "LayerNorm" in res.reason
    assert res.values.shape == (4, 6, 3)
    with pytest.raises(RuntimeError, match="DeepExplainer"):
        shap_values(net, _data(4, 1), _data(10, 2), explainer="deep")


def test_functional_nonlinearity_fails_additivity_and_falls_back():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 2)

        def forward(self, x):
            return torch.exp(self.lin(x))  # no module: DeepExplainer treats it as linear

    torch.manual_seed(0)
    net = Functional()
    with torch.no_grad():
        net.lin.weight.mul_(3)
    res = shap_values(net, _data(4, 1) * 2, _data(10, 2), nsamples=10)
    assert res.explainer == "gradient"
    assert "additivity" in res.reason


@pytest.mark.parametrize("explainer", ["deep", "gradient"])
def test_input_without_influence_has_zero_relevance(explainer):
    net = _mlp()
    with torch.no_grad():
        net.net[0].weight[:, 2] = 0.0  # feature 2 cannot reach the output
    res = shap_values(net, _data(6, 3), _data(12, 4), explainer=explainer, nsamples=30)
    imp = res.importance()
    assert np.all(imp[2] == 0.0)
    assert np.all(imp[[0, 1, 3, 4, 5]].sum(axis=0) > 0)


def test_columns_keeps_the_selected_outputs():
    net = _mlp()
    x = torch.from_numpy(_data(5, 0))
    with torch.no_grad():
        torch.testing.assert_close(Columns(net, [2, 0])(x), net(x)[:, [2, 0]])
    res = shap_values(Columns(net, [1]), x.numpy(), _data(10, 1))
    assert res.values.shape == (5, 6, 1) and res.explainer == "deep"


def test_pairs_dst_choice_and_groups():
    assert modality_pairs(["a", "b"]) == [("a", "b"), ("b", "a")]
    assert modality_pairs(["a", "b", "c"], ["c:a"]) == [("c", "a")]
    with pytest.raises(InputError):
        modality_pairs(["a", "b"], ["a-b"])
    x = np.column_stack([np.zeros(10), np.arange(10.0), np.ones(10), np.arange(10.0) * 3])
    names = ["f0", "f1", "f2", "f3"]
    assert choose_dst_features(x, names, 1).tolist() == [3]
    assert choose_dst_features(x, names, 1, ["f0", "nope"]).tolist() == [0, 3]
    assert choose_dst_features(x, names, 0, ["f2"]).tolist() == [2]
    assert choose_dst_features(x, names, None).tolist() == [0, 1, 2, 3]
    g = Groups(np.array([1, 0, 1, -1]), ["a", "b"], "label")
    assert g.cells("b").tolist() == [0, 2]


@pytest.mark.parametrize("batch_size", [26, 4096])  # 2 cells per pass (a short last one); all
def test_expected_gradients_equal_shaps_gradient_explainer(batch_size):
    import shap

    from mmint.explain.shap_engine import expected_gradients

    net = _mlp(layer_norm=True)
    x, bg = torch.from_numpy(_data(7, 3)), torch.from_numpy(_data(9, 4))
    ours = expected_gradients(net, bg, x, nsamples=13, batch_size=batch_size, seed=5)
    theirs = shap.GradientExplainer(net, bg, batch_size=13).shap_values(x, nsamples=13, rseed=5)
    theirs = np.stack(theirs, -1) if isinstance(theirs, list) else np.asarray(theirs)
    assert ours.shape == theirs.shape == (7, 6, 3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    # another seed draws other samples: the values move
    other = expected_gradients(net, bg, x, nsamples=13, batch_size=batch_size, seed=6)
    assert np.abs(other - theirs).max() > 1e-3
