"""UnitedNet's group heads: a fuser (softmax weights over modalities), a projector and a
cosine-style group layer per head, and all heads at once (:func:`stacked_heads`).

The heads keep their own modules (parameter names, checkpoints and explainer hooks unchanged);
a forward of every head stacks their parameters into ``(H, ...)`` tensors and runs one batched
product per layer instead of a Python loop over heads (the same values up to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_EPS = 1e-12


class WeightedMeanFuser(nn.Module):
    """Softmax-weighted mean of the modality latents, over the modalities a cell has.

    Parameters
    ----------
    n_modalities
        Number of modalities ``M``.
    latent_dim
        Latent width ``d``.
    per_feature
        One weight vector per latent dimension (``feature_weighted_mean``) instead of one for
        all dimensions (``weighted_mean``).
    """

    def __init__(self, n_modalities: int, latent_dim: int, per_feature: bool = False) -> None:
        super().__init__()
        shape = (latent_dim, n_modalities) if per_feature else (n_modalities,)
        self.per_feature = per_feature
        self.theta = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """All logits ``1/M``: equal weights, as in the reference."""
        nn.init.constant_(self.theta, 1.0 / self.theta.shape[-1])

    def weights(self) -> Tensor:
        """Softmax weights over modalities, ``(M,)`` or ``(d, M)``."""
        return torch.softmax(self.theta, dim=-1)

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        """Fuse ``z`` ``(B, M, d)`` with mask ``(B, M)`` into ``(B, d)``.

        A cell's weights are renormalised over its observed modalities; a cell with none gets 0.
        """
        w = self.weights()
        w = w.T if self.per_feature else w[:, None]  # (M, d) or (M, 1)
        wm = w[None] * mask[:, :, None]
        return (wm * z).sum(dim=1) / wm.sum(dim=1).clamp_min(_EPS)


class GroupHead(nn.Module):
    """Fuser -> projector ``Linear(d, p) [+ LayerNorm + ReLU]`` -> group layer (no bias).

    The group layer's weight rows are L2-normalised in place before every use
    (:meth:`normalize_`), which makes its logits cosine-style in the prototypes.
    """

    def __init__(
        self,
        n_modalities: int,
        latent_dim: int,
        n_groups: int,
        projector_dim: int = 100,
        per_feature: bool = False,
        projector_norm: bool = True,
    ) -> None:
        super().__init__()
        self.fuser = WeightedMeanFuser(n_modalities, latent_dim, per_feature)
        layers: list[nn.Module] = [nn.Linear(latent_dim, projector_dim)]
        if projector_norm:
            layers += [nn.LayerNorm(projector_dim), nn.ReLU()]
        self.projector = nn.Sequential(*layers)
        self.classifier = nn.Linear(projector_dim, n_groups, bias=False)

    @torch.no_grad()
    def normalize_(self) -> None:
        """L2-normalise the group layer's weight rows in place."""
        w = self.classifier.weight
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(_EPS))

    def forward(self, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(fused (B, d), hidden (B, p), logits (B, K))`` from ``z`` ``(B, M, d)``."""
        fused = self.fuser(z, mask)
        hidden = self.projector(fused)
        return fused, hidden, self.classifier(hidden)


def stacked_heads(heads: Sequence[nn.Module], z: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
    """``(fused (H, B, d), hidden (H, B, p), logits (H, B, K))`` of every head at once.

    The same as each :class:`~mmint.models.unitednet.module.GroupHead`'s forward stacked:
    softmax fuser weights renormalised over the observed modalities, projector
    ``Linear [+ LayerNorm + ReLU]``, bias-free group layer.

    Parameters
    ----------
    heads
        The group heads (same structure).
    z
        Modality latents ``(B, M, d)``.
    mask
        Observed modalities ``(B, M)``.
    """
    theta = torch.stack([h.fuser.theta for h in heads])  # (H, M) or (H, d, M)
    w = torch.softmax(theta, dim=-1)
    if heads[0].fuser.per_feature:
        wm = w.transpose(1, 2)[:, None] * mask[None, :, :, None]  # (H, B, M, d)
    else:
        wm = w[:, None, :, None] * mask[None, :, :, None]  # (H, B, M, 1)
    fused = (wm * z[None]).sum(dim=2) / wm.sum(dim=2).clamp_min(_EPS)
    linear, *rest = heads[0].projector
    weight = torch.stack([h.projector[0].weight for h in heads])  # (H, p, d)
    bias = torch.stack([h.projector[0].bias for h in heads])  # (H, p)
    hidden = torch.baddbmm(bias[:, None], fused, weight.transpose(1, 2))
    if rest:
        norm = rest[0]
        gamma = torch.stack([h.projector[1].weight for h in heads])[:, None]
        beta = torch.stack([h.projector[1].bias for h in heads])[:, None]
        hidden = F.layer_norm(hidden, norm.normalized_shape, eps=norm.eps) * gamma + beta
        hidden = torch.relu(hidden)
    classifier = torch.stack([h.classifier.weight for h in heads])  # (H, K, p)
    return fused, hidden, torch.bmm(hidden, classifier.transpose(1, 2))
