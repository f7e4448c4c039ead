"""Adversarial batch classifier: a latent that fools it carries no batch information."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmint.nn.mlp import MLP

__all__ = ["BatchAdversary", "batch_one_hot"]


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


def batch_one_hot(codes: Tensor, n_batches: int) -> Tensor:
    """Float one-hot ``(B, n_batches)`` of integer batch codes (the decoders' covariate)."""
    return F.one_hot(codes.long(), n_batches).float()
