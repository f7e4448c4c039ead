"""A vector quantiser whose codebook follows exponential moving averages (VQ-VAE, EMA variant).

The codebook is a buffer, not a parameter: it moves only through the EMA update, which runs in
training mode. Gradients cross the quantiser by the straight-through estimator and the only
loss it contributes is the commitment term ``beta * MSE(z, sg[e])``.

The EMA is bias corrected (Adam's correction): hidden states start at zero, and after ``t``
updates the average is ``hidden / (1 - decay**t)``. Cluster sizes get Laplace smoothing before
they divide the summed vectors, so that a code with no member does not divide by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class VQOutput:
    """What :class:`VectorQuantizerEMA` returns.

    Attributes
    ----------
    quantized
        ``(n, dim)`` codes, equal to the nearest codebook vectors in value; their gradient
        with respect to the input is the identity (straight-through).
    indices
        ``(n,)`` index of the nearest code of each row.
    commitment_loss
        ``commitment * mean((z - sg[e])**2)``, a scalar (0 for an empty input).
    perplexity
        ``exp(-sum_k p_k log p_k)`` of the code frequencies ``p`` in this input.
    """

    quantized: Tensor
    indices: Tensor
    commitment_loss: Tensor
    perplexity: Tensor


def perplexity(indices: Tensor, n_codes: int) -> Tensor:
    """Perplexity ``exp(H(p))`` of the code usage ``p`` (frequencies of ``indices``).

    It is 1 when every row uses the same code and ``n_codes`` when usage is uniform.
    """
    if indices.numel() == 0:
        return torch.ones((), device=indices.device)
    p = torch.bincount(indices, minlength=n_codes).float() / indices.numel()
    return torch.exp(-(p * torch.log(p + 1e-10)).sum())


class VectorQuantizerEMA(nn.Module):
    """Nearest-code quantiser with an EMA-updated codebook.

    Parameters
    ----------
    n_codes
        Number of codebook vectors.
    dim
        Dimension of the codes (and of the input rows).
    decay
        EMA decay of the cluster sizes and summed vectors.
    eps
        Laplace smoothing constant of the cluster sizes.
    commitment
        Weight ``beta`` of the commitment loss.
    dead_threshold
        A code whose EMA cluster size (bias corrected, before smoothing; an average count per
        update) is below this is counted as dead by :meth:`dead_codes`.
    """

    def __init__(
        self,
        n_codes: int = 1024,
        dim: int = 16,
        decay: float = 0.99,
        eps: float = 1e-5,
        commitment: float = 0.25,
        dead_threshold: float = 1e-2,
    ) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.n_codes, self.dim = n_codes, dim
        self.decay, self.eps = decay, eps
        self.commitment, self.dead_threshold = commitment, dead_threshold
        codebook = torch.empty(n_codes, dim)
        nn.init.xavier_uniform_(codebook)
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_size_hidden", torch.zeros(n_codes))
        self.register_buffer("ema_sum_hidden", torch.zeros(n_codes, dim))
        # a buffer, so that the bias correction survives a checkpoint round trip
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))

    def nearest(self, z: Tensor) -> Tensor:
        """Index of the nearest code (Euclidean) of each row of ``z``."""
        d = (
            z.pow(2).sum(1, keepdim=True)
            - 2.0 * z @ self.codebook.t()
            + self.codebook.pow(2).sum(1)[None, :]
        )
        return d.argmin(dim=1)

    def _correction(self) -> float:
        return 1.0 - self.decay ** int(self.ema_steps)

    @property
    def cluster_size(self) -> Tensor:
        """Bias-corrected EMA cluster sizes ``(n_codes,)`` (zeros before the first update)."""
        if int(self.ema_steps) == 0:
            return torch.zeros_like(self.ema_size_hidden)
        return self.ema_size_hidden / self._correction()

    def dead_codes(self) -> int:
        """Number of codes whose EMA cluster size is below ``dead_threshold``."""
        return int((self.cluster_size < self.dead_threshold).sum())

    @torch.no_grad()
    def ema_update(self, z: Tensor, indices: Tensor) -> None:
        """One EMA step of the codebook from rows ``z`` assigned to codes ``indices``."""
        onehot = F.one_hot(indices, self.n_codes).to(z.dtype)
        counts = onehot.sum(0)
        sums = onehot.t() @ z.detach()
        self.ema_steps += 1
        self.ema_size_hidden.mul_(self.decay).add_((1.0 - self.decay) * counts)
        self.ema_sum_hidden.mul_(self.decay).add_((1.0 - self.decay) * sums)
        corr = self._correction()
        size = self.ema_size_hidden / corr
        n = size.sum()
        smoothed = (size + self.eps) / (n + self.n_codes * self.eps) * n
        self.codebook.copy_(self.ema_sum_hidden / corr / smoothed[:, None])

    def forward(self, z: Tensor, update: bool | None = None) -> VQOutput:
        """Quantise the rows of ``z`` ``(n, dim)``.

        Parameters
        ----------
        z
            Pre-quantisation latents.
        update
            Whether to take an EMA step of the codebook; defaults to ``self.training``. The
            returned codes come from the codebook as it was before the step.
        """
        if z.shape[0] == 0:
            empty = z.new_zeros(())
            return VQOutput(z, z.new_zeros(0, dtype=torch.long), empty, empty + 1.0)
        indices = self.nearest(z.detach())
        e = F.embedding(indices, self.codebook)
        commitment = self.commitment * F.mse_loss(z, e.detach())
        quantized = z + (e - z).detach()
        if self.training if update is None else update:
            self.ema_update(z, indices)
        return VQOutput(quantized, indices, commitment, perplexity(indices, self.n_codes))
