"""UnitedNet's losses as pure functions of tensors (no modules, no state).

Weights and the averaging over modalities and heads are applied by the caller
(:mod:`mmint.models.unitednet.module`); each function here is one formula of the method,
written so that it can be checked by hand on tiny tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: numerical floor of the Cauchy-Schwarz divergence (the DDC paper's epsilon)
EPS = 1e-9


def distance(pred: Tensor, target: Tensor, binary: bool) -> Tensor:
    """Reconstruction distance, mean over all elements.

    Parameters
    ----------
    pred
        Decoder output ``(n, f)``: values for a continuous target, **logits** for a binary one.
    target
        Target ``(n, f)`` in model-input space.
    binary
        Binary cross-entropy (on logits, numerically stable) when true, else mean squared error.
    """
    if binary:
        return F.binary_cross_entropy_with_logits(pred, target)
    return F.mse_loss(pred, target)


def mean_distance(terms: Sequence[tuple[Tensor, Tensor, bool]]) -> Tensor:
    """Mean of :func:`distance` over ``(pred, target, binary)`` terms that have any rows.

    Reconstruction is this mean over the ``M`` terms ``(D_m(E_m(x_m)), x_m)``; cross-modal
    translation is it over the ``M^2 - M`` terms ``(D_i(E_j(x_j)), x_i)``, ``i != j``, each
    restricted by the caller to the cells that have both modalities. Terms without cells are
    left out; with none left the result is a zero that still has a graph.
    """
    values = [distance(p, t, b) for p, t, b in terms if p.shape[0] > 0]
    if not values:
        return _zero(terms)
    return torch.stack(values).mean()


def discriminator_loss(real: Sequence[Tensor], fake: Sequence[Tensor]) -> Tensor:
    """Least-squares GAN discriminator loss, mean over modalities.

    ``mean_m [MSE(C_m(x_m), 1) + MSE(C_m(x_hat_mm), 0)]`` on sigmoid scores; pass detached
    fakes so that only the discriminators learn from it.
    """
    values = [
        F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f))
        for r, f in zip(real, fake, strict=True)
        if r.shape[0] > 0 and f.shape[0] > 0
    ]
    return torch.stack(values).mean() if values else _zero(list(real))


def generator_loss(fake: Sequence[Tensor]) -> Tensor:
    """Least-squares GAN generator loss ``mean_m MSE(C_m(x_hat_mm), 1)``."""
    values = [F.mse_loss(f, torch.ones_like(f)) for f in fake if f.shape[0] > 0]
    return torch.stack(values).mean() if values else _zero(list(fake))


def sample_negatives(
    groups: Tensor,
    valid: Tensor,
    anchors: Tensor,
    n_negatives: int,
    generator: torch.Generator | None = None,
    strata: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw negatives for contrastive anchors among rows of another predicted group.

    Parameters
    ----------
    groups
        Predicted group of every row ``(R,)``.
    valid
        Boolean ``(R,)``: rows that may be drawn (observed modality of a cell).
    anchors
        Row index of each anchor ``(P,)``.
    n_negatives
        Draws per anchor, with replacement (uniform over the allowed rows).
    generator
        Random generator of the draws (reproducible sampling).
    strata
        Optional stratum of every row ``(R,)`` (the batch): negatives then come from the
        anchor's own stratum only, so a latent cannot tell positives from negatives by it.

    Returns
    -------
    keep
        Boolean ``(P,)``: anchors that have at least one allowed row (the others are dropped).
    negatives
        ``(keep.sum(), n_negatives)`` row indices.
    """
    strata = torch.zeros_like(groups) if strata is None else strata
    anchor_keys = torch.stack([groups[anchors], strata[anchors]], dim=1)
    keep = torch.zeros_like(anchors, dtype=torch.bool)
    draws = anchors.new_zeros((anchors.shape[0], max(n_negatives, 0)))
    # the allowed rows depend on the anchor's group and stratum only: draw per (group,
    # stratum) pair, in sorted order (reproducible)
    for g, st in torch.unique(anchor_keys, dim=0).tolist():
        rows = (valid & (groups != g) & (strata == st)).nonzero().squeeze(1)
        mine = (anchor_keys[:, 0] == g) & (anchor_keys[:, 1] == st)
        if rows.numel() == 0:
            continue
        keep |= mine
        if n_negatives > 0:
            pick = torch.randint(
                rows.numel(),
                (int(mine.sum()), n_negatives),
                generator=generator,
                device=rows.device,
            )
            draws[mine] = rows[pick]
    negatives = draws[keep]
    return keep, negatives


def contrastive_loss(
    projected: Tensor, positives: Tensor, negatives: Tensor, temperature: float = 0.1
) -> Tensor:
    """InfoNCE over cosine similarities with given positive and negative rows.

    ``mean_p CE([s(a_p, b_p), s(a_p, n_p1), ...], 0)`` with ``s = cos / temperature``.

    Parameters
    ----------
    projected
        Stacked (projected) latents ``(R, d)``: the rows of all modalities.
    positives
        ``(P, 2)``: anchor row and its positive row (the same cell in another modality).
    negatives
        ``(P, k)``: negative rows of each anchor.
    temperature
        Softmax temperature (0.1 in the reference).
    """
    if positives.shape[0] == 0:
        return projected.sum() * 0.0
    unit = F.normalize(projected, dim=1)
    # similarities of each anchor to every row, then pick (cheaper than gathering vectors)
    sim = unit[positives[:, 0]] @ unit.T
    pos = sim.gather(1, positives[:, 1:2])
    neg = sim.gather(1, negatives)
    logits = torch.cat([pos, neg], dim=1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def multiview_contrastive_loss(
    latents: Sequence[Tensor],
    masks: Sequence[Tensor],
    groups: Tensor,
    temperature: float = 0.1,
    negative_fraction: float = 0.25,
    generator: torch.Generator | None = None,
    strata: Tensor | None = None,
) -> Tensor:
    """The reference's contrastive loss across modalities.

    The ``M`` latents of a batch of ``B`` cells are stacked (row ``m * B + k`` is cell ``k``
    in modality ``m``). Positives: for each ordered pair of modalities ``a != b`` and each cell
    with both, ``(row(a, k), row(b, k))``. Negatives: ``int(negative_fraction * M * B)`` rows
    drawn with replacement among observed rows whose cell has another predicted group. Zero
    when no anchor has a row of another group (e.g. one predicted group in the batch).

    Parameters
    ----------
    latents
        Per-modality (projected) latents, each ``(B, d)``.
    masks
        Per-modality 0/1 float or boolean masks ``(B,)``.
    groups
        Predicted group per cell ``(B,)`` (no gradient).
    temperature, negative_fraction, generator
        As in :func:`contrastive_loss` and :func:`sample_negatives`.
    strata
        Optional stratum per cell ``(B,)`` (the batch): negatives from the anchor's own
        stratum only (see :func:`sample_negatives`); ``None``: the reference's sampling.
    """
    m, b = len(latents), latents[0].shape[0]
    stacked = torch.cat(list(latents), dim=0)
    observed = torch.stack([mk.bool() for mk in masks])  # (M, B)
    rows = torch.arange(m * b, device=stacked.device).view(m, b)
    pairs = []
    for i in range(m):
        for j in range(m):
            both = observed[i] & observed[j]
            if i != j and bool(both.any()):
                pairs.append(torch.stack([rows[i][both], rows[j][both]], dim=1))
    if not pairs:
        return stacked.sum() * 0.0
    positives = torch.cat(pairs, dim=0)
    keep, negatives = sample_negatives(
        groups.repeat(m),
        observed.reshape(-1),
        positives[:, 0],
        int(negative_fraction * m * b),
        generator,
        None if strata is None else strata.repeat(m),
    )
    if not bool(keep.any()) or negatives.shape[1] == 0:
        return stacked.sum() * 0.0
    return contrastive_loss(stacked, positives[keep], negatives, temperature)


def gaussian_kernel(hidden: Tensor, rel_sigma: float = 0.15) -> Tensor:
    """Gaussian kernel ``exp(-|h_i - h_j|^2 / (2 sigma^2))``, ``sigma^2 = rel_sigma * median``.

    The median is ``torch.median`` (the lower median) of all ``B^2`` squared distances, the
    zero diagonal included, detached and floored at ``EPS``; small negative squared distances
    from rounding are set to zero. This is the DDC implementation the reference uses.
    ``hidden`` is ``(B, p)``, or ``(H, B, p)`` for ``H`` heads at once (one median each).
    """
    if hidden.shape[-2] == 0:
        return hidden.new_zeros((*hidden.shape[:-2], 0, 0))
    sq = F.relu(torch.cdist(hidden, hidden).pow(2))
    median = sq.detach().flatten(-2).median(dim=-1).values  # the lower median, as torch.median
    sigma2 = (rel_sigma * median).clamp_min(EPS)
    return torch.exp(-sq / (2 * sigma2[..., None, None]))


def cauchy_schwarz_divergence(assign: Tensor, kernel: Tensor) -> Tensor:
    """DDC's ``d_cs``: mean over cluster pairs ``c < c'`` of ``N_cc' / sqrt(N_cc N_c'c')``.

    ``N = assign^T kernel assign`` (entries floored at ``EPS``, the product of diagonals at
    ``EPS^2``); the sum over ``c < c'`` is scaled by ``2 / (K (K - 1))``. ``assign`` ``(B, K)``
    and ``kernel`` ``(B, B)``, or with a leading heads dimension (one value per head).
    """
    k = assign.shape[-1]
    if k < 2:
        return assign.sum(dim=(-2, -1)) * 0.0
    nom = assign.transpose(-2, -1) @ kernel @ assign
    diag = torch.diagonal(nom, dim1=-2, dim2=-1)
    dnom = (diag[..., :, None] * diag[..., None, :]).clamp_min(EPS**2)
    ratio = nom.clamp_min(EPS) / dnom.sqrt()
    return 2.0 / (k * (k - 1)) * torch.triu(ratio, diagonal=1).sum(dim=(-2, -1))


def ddc_loss(probs: Tensor, hidden: Tensor, rel_sigma: float = 0.15) -> Tensor:
    """Deep divergence-based clustering loss ``L1 + L3`` of one head (or of ``H`` heads at once:
    ``probs`` ``(H, B, K)``, ``hidden`` ``(H, B, p)``, one value per head).

    ``L1 = d_cs(A, K)`` on the soft assignments ``A``; ``L3 = d_cs(M, K)`` with
    ``M_ic = exp(-|a_i - e_c|^2)`` (closeness of each assignment to the simplex corners).
    ``K`` is :func:`gaussian_kernel` of the head's hidden representation. DDC's ``L2`` term
    is not part of the reference (its self-entropy loss plays that role).
    """
    kernel = gaussian_kernel(hidden, rel_sigma)
    eye = torch.eye(probs.shape[-1], device=probs.device, dtype=probs.dtype)
    eye = eye.expand(*probs.shape[:-2], *eye.shape)
    corners = torch.exp(-torch.cdist(probs, eye).pow(2))
    return cauchy_schwarz_divergence(probs, kernel) + cauchy_schwarz_divergence(corners, kernel)


def self_entropy_loss(probs: Tensor) -> Tensor:
    """Negative entropy of the mean assignment ``sum_c pbar_c log pbar_c`` (favours balance);
    ``probs`` ``(B, K)`` or ``(H, B, K)`` (one value per head)."""
    mean = probs.mean(dim=-2)
    return torch.special.xlogy(mean, mean).sum(dim=-1)


def cross_entropy_loss(logits: Tensor, labels: Tensor, class_weights: Tensor | None) -> Tensor:
    """Class-weighted cross-entropy over labelled cells; label ``-1`` never enters it.

    As in torch, the weighted mean divides by the sum of the weights of the labelled cells'
    classes. Zero (with a graph) when the batch has no labelled cell. ``logits`` ``(B, K)``, or
    ``(H, B, K)`` for ``H`` heads (one value per head).
    """
    labelled = labels >= 0
    if not bool(labelled.any()):
        return logits.sum(dim=(-2, -1)) * 0.0
    y = labels[labelled]
    if logits.dim() == 2:
        return F.cross_entropy(logits[labelled], y, weight=class_weights)
    lg = logits[:, labelled].permute(1, 2, 0)  # (n, K, H): classes on dim 1
    nll = F.cross_entropy(lg, y[:, None].expand(-1, lg.shape[2]), class_weights, reduction="none")
    total = class_weights[y].sum() if class_weights is not None else nll.new_tensor(len(y))
    return nll.sum(dim=0) / total


def _zero(items: Sequence) -> Tensor:
    for item in items:
        tensor = item[0] if isinstance(item, tuple) else item
        if isinstance(tensor, Tensor):
            return tensor.sum() * 0.0
    return torch.zeros(())
