"""The batch adversary's two losses, shared by the models that mix batches adversarially.

A :class:`mmint.nn.batch.BatchAdversary` classifies the batch of a cell from its latent; the
encoders learn to fool it (:func:`fool_loss`, part of the model's loss) and the classifier
learns on the detached latents in its own step (:func:`classifier_loss`). A model with one
latent per modality passes them as a dict with masks: each modality's latent counts over the
cells that have it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmint.nn.batch import BatchAdversary

Latents = Tensor | dict[str, Tensor]


def _observed(
    z: Latents, codes: Tensor, masks: dict[str, Tensor] | None
) -> list[tuple[Tensor, Tensor]]:
    """``(latent rows, batch codes)`` of the observed cells of each latent."""
    if isinstance(z, Tensor):
        return [(z, codes)]
    out = []
    for m, zm in z.items():
        if masks is None:
            out.append((zm, codes))
            continue
        obs = masks[m] > 0
        out.append((zm[obs], codes[obs]))
    return out


def fool_loss(
    adversary: BatchAdversary, z: Latents, codes: Tensor, masks: dict[str, Tensor] | None = None
) -> Tensor | None:
    """The encoders' loss: cross-entropy toward the other batches, the mean over the latents
    with at least two observed cells (``None`` when there is none)."""
    terms = [adversary.loss(zm, c, fool=True) for zm, c in _observed(z, codes, masks) if len(c) > 1]
    return torch.stack(terms).mean() if terms else None


def classifier_loss(
    adversary: BatchAdversary, z: Latents, codes: Tensor, masks: dict[str, Tensor] | None = None
) -> Tensor | None:
    """The classifier's loss on the detached observed latents, all modalities' rows together
    (``None`` with fewer than two rows: BatchNorm cannot train on one)."""
    pairs = _observed(z, codes, masks)
    zs = torch.cat([zm.detach() for zm, _ in pairs])
    if zs.shape[0] < 2:
        return None
    return adversary.loss(zs, torch.cat([c for _, c in pairs]), fool=False)
