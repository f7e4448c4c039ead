"""Encoder options beyond the plain MLP: a residual MLP and a variational (Gaussian) latent.

- :class:`ResidualMLP`: :class:`~mmint.nn.mlp.MLP`'s layers, with every hidden-to-hidden
  layer a residual block ``skip(h) + f(h)`` (``skip`` the identity where the widths match,
  else a bias-free linear projection). The first layer (input -> first hidden, where a sparse
  input enters) and the output layer stay plain, so the latent keeps its own norm and
  activation.
- :class:`VariationalLatent`: a reparameterised Gaussian on top of an encoder's output ``h``:
  mean ``h`` itself, log-variance ``Linear(h)``. The deterministic encoder is its limit
  ``sigma -> 0``, so an ablation against it measures the noise and the KL term only. Its KL
  to ``N(0, I)`` is averaged over latent dimensions and cells (the scale of the mean-over-
  features reconstruction losses), with a weight of its own in the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mmint.nn.mlp import MLP, make_activation
from mmint.nn.sparse import feature_major_

ENCODERS = ("mlp", "residual")


class ResidualBlock(nn.Module):
    """``skip(x) + act(norm(dropout(Linear(x))))``.

    Parameters
    ----------
    n_in, n_out
        Widths; ``skip`` is the identity when they match, else ``Linear(n_in, n_out,
        bias=False)``.
    activation, dropout, batch_norm, layer_norm
        The branch's layers, in :class:`~mmint.nn.mlp.MLP`'s order.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        activation: str | None = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        layers = [nn.Linear(n_in, n_out), *_norms(n_out, dropout, batch_norm, layer_norm)]
        layers.append(make_activation(activation))
        self.branch = nn.Sequential(*layers)
        self.skip = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``skip(x) + branch(x)``."""
        return self.skip(x) + self.branch(x)


class ResidualMLP(MLP):
    """:class:`~mmint.nn.mlp.MLP` (same arguments) with residual hidden-to-hidden layers.

    Layers: ``Linear(n_in, hidden[0])`` with its dropout / norms / activation, then one
    :class:`ResidualBlock` per pair of consecutive hidden widths, then the output layer
    (``Linear``, ``out_norm``, ``out_activation``). With fewer than two hidden layers it is
    the plain MLP. ``dropout_first_only`` keeps the blocks' branches free of dropout.
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
        nn.Module.__init__(self)
        hidden = list(hidden)
        plain_args = {
            "activation": activation,
            "out_activation": out_activation,
            "dropout": dropout,
            "dropout_first_only": dropout_first_only,
            "batch_norm": batch_norm,
            "layer_norm": layer_norm,
            "out_norm": out_norm,
            "bias": bias,
            "sparse_input": sparse_input,
        }
        if len(hidden) < 2:  # no hidden-to-hidden layer: the plain MLP
            self.net = MLP(n_in, hidden, n_out, **plain_args).net
            return
        if out_norm == "layer" and n_out == 1:
            raise ValueError("LayerNorm over a single output unit is constant; use out_norm=None")
        first: list[nn.Module] = [nn.Linear(n_in, hidden[0], bias=bias)]
        first += _norms(hidden[0], dropout, batch_norm, layer_norm)
        first.append(make_activation(activation))
        block_drop = 0.0 if dropout_first_only else dropout
        blocks = [
            ResidualBlock(a, b, activation, block_drop, batch_norm, layer_norm)
            for a, b in zip(hidden[:-1], hidden[1:], strict=True)
        ]
        out: list[nn.Module] = [nn.Linear(hidden[-1], n_out, bias=bias)]
        if out_norm == "batch":
            out.append(nn.BatchNorm1d(n_out))
        elif out_norm == "layer":
            out.append(nn.LayerNorm(n_out))
        out.append(make_activation(out_activation))
        self.net = nn.Sequential(*first, *blocks, *out)
        if sparse_input:
            feature_major_(self.net[0])


def _norms(width: int, dropout: float, batch_norm: bool, layer_norm: bool) -> list[nn.Module]:
    """A hidden layer's dropout and norms, in :class:`~mmint.nn.mlp.MLP`'s order."""
    layers: list[nn.Module] = []
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    if batch_norm:
        layers.append(nn.BatchNorm1d(width))
    if layer_norm:
        layers.append(nn.LayerNorm(width))
    return layers


class VariationalLatent(nn.Module):
    """A reparameterised Gaussian latent: mean ``h``, log-variance ``Linear(h)`` (clamped).

    Parameters
    ----------
    dim
        Latent width.
    max_log_var
        Bound on ``|log sigma^2|`` so that an early step cannot overflow ``exp``.
    """

    def __init__(self, dim: int, max_log_var: float = 10.0) -> None:
        super().__init__()
        self.log_var = nn.Linear(dim, dim)
        self.max_log_var = max_log_var
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """A small, uniform variance (``sigma^2 = e^-4``): the encoder's own latent at first."""
        nn.init.zeros_(self.log_var.weight)
        nn.init.constant_(self.log_var.bias, -4.0)

    def forward(
        self, h: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mu, log_var)``: ``z = mu + sigma * eps`` in training, ``mu`` in eval mode."""
        mu = h
        log_var = self.log_var(h).clamp(-self.max_log_var, self.max_log_var)
        if not self.training:
            return mu, mu, log_var
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * log_var) * eps, mu, log_var


def gaussian_kl(mu: Tensor, log_var: Tensor) -> Tensor:
    """``KL(N(mu, sigma^2) || N(0, 1))`` averaged over dimensions and rows:
    ``0.5 (mu^2 + sigma^2 - 1 - log sigma^2)``."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).mean()


__all__ = ["ENCODERS", "ResidualBlock", "ResidualMLP", "VariationalLatent", "gaussian_kl"]
