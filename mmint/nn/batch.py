"""Batch covariates for decoders, and an adversarial batch classifier for latents."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmint.nn.mlp import MLP

__all__ = ["AppendConstant", "BatchAdversary", "batch_one_hot"]


class BatchAdversary(nn.Module):
    """Classifier of the batch from the latent, for adversarial batch mixing.

    Two hidden layers of ``n_hidden`` units (ReLU, BatchNorm, dropout 0.1) as scvi-tools'
    ``Classifier``.
    """

    def __init__(self, n_latent: int, n_batches: int, n_hidden: int = 32) -> None:
        super().__init__()
        self.n_batches = n_batches
        self.net = MLP(
            n_latent,
            [n_hidden, n_hidden],
            n_batches,
            activation="relu",
            dropout=0.1,
            batch_norm=True,
        )

    def loss(self, z: Tensor, batch_codes: Tensor, fool: bool) -> Tensor:
        """Cross-entropy toward the true batch, or (``fool``) toward uniform over the others."""
        log_p = torch.log_softmax(self.net(z), -1)
        target = F.one_hot(batch_codes.long(), self.n_batches).float()
        if fool:
            target = (1.0 - target) / (self.n_batches - 1)
        return -(log_p * target).sum(-1).mean()


def batch_one_hot(codes: Tensor, n_batches: int, seen: Tensor | None = None) -> Tensor:
    """The decoders' batch covariate: float one-hot ``(B, n_batches)`` of integer batch codes.

    Parameters
    ----------
    codes
        Batch code per cell.
    n_batches
        Number of batches.
    seen
        Optional boolean ``(n_batches,)``: batches that have training cells. A cell of a batch
        without any (a held-out batch) gets the uniform mix of the seen batches instead of a
        column the decoders never learned.
    """
    out = F.one_hot(codes.long(), n_batches).float()
    if seen is None or bool(seen.all()) or not bool(seen.any()):
        return out
    mix = seen.to(out.dtype) / seen.sum()
    return torch.where(seen[codes.long()][:, None], out, mix.expand_as(out))


class AppendConstant(nn.Module):
    """Append a constant row (a fixed decoder covariate) to every input row.

    Affine in its input, so explainers need no special rule for it.
    """

    def __init__(self, row: Tensor) -> None:
        super().__init__()
        self.register_buffer("row", row.reshape(1, -1).clone())

    def forward(self, z: Tensor) -> Tensor:
        """``[z, row]`` for every row of ``z``."""
        return torch.cat([z, self.row.expand(z.shape[0], -1)], dim=1)
