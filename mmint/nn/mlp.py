"""A configurable multi-layer perceptron used by every model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmint.nn.sparse import feature_major_, is_sparse, sparse_linear

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "mish": nn.Mish,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}


def make_activation(name: str | None) -> nn.Module:
    """Build an activation module by name (``None``, ``"none"`` or ``"linear"`` give identity)."""
    if name is None or name in ("none", "linear"):
        return nn.Identity()
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """Stack of ``Linear -> Dropout -> BatchNorm -> LayerNorm -> activation`` blocks.

    The block order is the original UnitedNet's. Per-layer options may be given as a single
    value (applied to every hidden layer) and the last layer has its own options, because
    output layers usually want no norm and a task-specific activation.

    Parameters
    ----------
    n_in
        Input width.
    hidden
        Hidden widths (may be empty).
    n_out
        Output width.
    activation
        Activation of hidden layers.
    out_activation
        Activation of the output layer (``None`` for linear).
    dropout
        Dropout probability after each hidden ``Linear`` (and on the first layer only if
        ``dropout_first_only``).
    batch_norm, layer_norm
        Normalisation of hidden layers.
    out_norm
        ``None``, ``"batch"`` or ``"layer"`` for the output layer. LayerNorm over a one-unit
        output is refused: it outputs its bias whatever the input (a defect of the original).
    bias
        Whether the linear layers have biases.
    sparse_input
        The input may be a sparse (CSR) tensor: the first layer then sums only the stored
        entries (:func:`mmint.nn.sparse.sparse_linear`) and keeps its weight feature-major.
        A dense input gives the same result either way.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        activation: str | None = "relu",
        out_activation: str | None = None,
        dropout: float = 0.0,
        dropout_first_only: bool = False,
        batch_norm: bool = False,
        layer_norm: bool = False,
        out_norm: str | None = None,
        bias: bool = True,
        sparse_input: bool = False,
    ) -> None:
        super().__init__()
        if out_norm == "layer" and n_out == 1:
            raise ValueError("LayerNorm over a single output unit is constant; use out_norm=None")
        widths = [n_in, *hidden, n_out]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            last = i == len(widths) - 2
            layers.append(nn.Linear(a, b, bias=bias))
            if not last:
                if dropout > 0 and (i == 0 or not dropout_first_only):
                    layers.append(nn.Dropout(dropout))
                if batch_norm:
                    layers.append(nn.BatchNorm1d(b))
                if layer_norm:
                    layers.append(nn.LayerNorm(b))
                layers.append(make_activation(activation))
            else:
                if out_norm == "batch":
                    layers.append(nn.BatchNorm1d(b))
                elif out_norm == "layer":
                    layers.append(nn.LayerNorm(b))
                layers.append(make_activation(out_activation))
        if sparse_input:
            feature_major_(layers[0])
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network (``x`` dense, or sparse into the first layer)."""
        if not is_sparse(x):
            return self.net(x)
        first, *rest = self.net
        x = sparse_linear(x, first.weight, first.bias)
        for layer in rest:
            x = layer(x)
        return x
