"""UnitedNet's per-step work in fewer, larger operations (same values up to float rounding).

- Every group head at once: :func:`~.group_heads.stacked_heads`.
- One decoder call for several sources: a decoder whose rows do not interact in training (no
  batch norm, no active dropout) decodes the latents of all its sources stacked, so that its
  weight gradients are one product over ``S * B`` rows instead of ``S`` products and sums.
- A network called with its parameters frozen: the generator loss needs the discriminators'
  input gradients only (their parameter gradients would be discarded by the next zero_grad).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn


def row_independent(module: nn.Module) -> bool:
    """Whether ``module``'s output rows depend on their own input row only, and it draws no
    random numbers: no batch norm in training, no dropout with ``p > 0`` in training."""
    if not module.training:
        return True
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            return False
        if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.p > 0:
            return False
    return True


def call_stacked(module: nn.Module, inputs: Sequence[Tensor]) -> list[Tensor]:
    """``[module(x) for x in inputs]``, as one call on the stacked rows when that gives the same
    values (:func:`row_independent`)."""
    if len(inputs) < 2 or not row_independent(module):
        return [module(x) for x in inputs]
    out = module(torch.cat(list(inputs), dim=0))
    return list(torch.split(out, [x.shape[0] for x in inputs], dim=0))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Calls of ``module`` inside build no graph to its parameters (input gradients only)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
