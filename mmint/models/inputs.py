"""The inputs of a step: dense float model inputs and 0/1 masks per modality of a batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmint import keys

Batch = dict[str, Tensor]


def dense(x: Tensor) -> Tensor:
    """``x`` as a dense (strided) tensor; sparse COO or CSR batches are densified."""
    return x if x.layout == torch.strided else x.to_dense()


def step_inputs(
    batch: Batch,
    modalities: Sequence[str],
    keep_sparse: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Float model inputs and masks of every modality of ``batch``.

    Parameters
    ----------
    batch
        A dict batch (keys in :mod:`mmint.keys`).
    modalities
        The model's modalities, in its order.
    keep_sparse
        Leave sparse inputs sparse (for a first layer that reads them so).
    dtype
        The inputs' dtype (the model's).

    Returns
    -------
    x
        ``{modality: (n, p)}`` in ``dtype``.
    masks
        ``{modality: (n,) 0/1}`` in ``x``'s dtype; all ones where the batch has no mask.
    """
    x, masks = {}, {}
    for m in modalities:
        t = batch[m]
        x[m] = (t if keep_sparse and t.layout != torch.strided else dense(t)).to(dtype)
        mk = batch.get(keys.mask_key(m))
        if mk is None:
            mk = torch.ones(x[m].shape[0], device=x[m].device)
        masks[m] = mk.to(x[m].dtype)
    return x, masks


def batch_size(batch: Batch, modalities: Sequence[str]) -> int:
    """Cells in ``batch``."""
    if keys.INDEX in batch:
        return len(batch[keys.INDEX])
    return batch[modalities[0]].shape[0]
