"""Sparse inputs into the first layer: CSR batches, a sparse ``Linear`` and its weight layout.

A batch of a wide sparse modality (25,734 peaks at 0.4 % density on SNARE-seq) reaches a model
as a torch CSR tensor. Its first layer then costs ``nnz x width`` instead of
``features x width`` per cell: the product is a weighted gather of rows of ``W.T``
(:func:`torch.nn.functional.embedding_bag` with ``mode="sum"``), and the weight gradient a
scatter-add into the same rows. Both want ``W.T`` contiguous, so such a layer keeps its weight
stored feature-major (:func:`feature_major_`): the parameter is still the ``(out, in)`` weight
of an ``nn.Linear`` (same name, shape, values, checkpoints), only its strides differ, and a dense
input runs through the same BLAS product with the transposed flag.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: sparse modalities at least this wide are "wide": never made dense, and given to models
#: that accept them as sparse batches (narrower ones are cheap to densify per batch)
SPARSE_MIN_FEATURES = 2048


def is_sparse(x: Tensor) -> bool:
    """Whether ``x`` is a sparse (CSR or COO) tensor."""
    return x.layout in (torch.sparse_csr, torch.sparse_coo)


def csr_tensor(x: sp.spmatrix) -> Tensor:
    """A scipy sparse matrix as a float32 torch CSR tensor (int64 indices, no densifying)."""
    x = sp.csr_matrix(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta state"
        return torch.sparse_csr_tensor(
            torch.from_numpy(x.indptr.astype(np.int64)),
            torch.from_numpy(x.indices.astype(np.int64)),
            torch.from_numpy(np.asarray(x.data, dtype=np.float32)),
            size=x.shape,
            check_invariants=False,
        )


def scipy_csr(x: Tensor) -> sp.csr_matrix:
    """A torch CSR (or COO) tensor as a scipy CSR matrix (on the CPU)."""
    crow, col, values = (t.cpu().numpy() for t in csr_parts(x))
    return sp.csr_matrix((values, col, crow), shape=tuple(x.shape))


def csr_parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(crow_indices, col_indices, values)`` of a CSR tensor (a COO one is converted)."""
    if x.layout == torch.sparse_coo:
        x = x.coalesce().to_sparse_csr()
    return x.crow_indices(), x.col_indices(), x.values()


def nnz_rows(crow: Tensor) -> Tensor:
    """Row index of every stored entry of a CSR tensor with row pointers ``crow``."""
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(len(counts), device=crow.device), counts)


def dense(x: Tensor) -> Tensor:
    """``x`` as a strided tensor (sparse tensors are densified, others returned as they are)."""
    return x.to_dense() if is_sparse(x) else x


def sparse_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for a sparse ``x`` ``(n, in)`` and ``weight`` ``(out, in)``.

    Sums only the stored entries of each row (``nnz x out`` work); fast when ``weight`` is
    stored feature-major (:func:`feature_major_`), correct for any layout.
    """
    crow, col, values = csr_parts(x)
    # one bag per row (empty rows give zeros)
    out = F.embedding_bag(
        col, weight.t(), crow[:-1], mode="sum", per_sample_weights=values.to(weight.dtype)
    )
    return out if bias is None else out + bias


def linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``layer(x)`` for a dense or sparse ``x``."""
    return sparse_linear(x, layer.weight, layer.bias) if is_sparse(x) else layer(x)


@torch.no_grad()
def feature_major_(layer: nn.Linear) -> nn.Linear:
    """Store ``layer``'s weight feature-major (``weight.T`` contiguous), values unchanged.

    The parameter keeps its name, shape and values (state dicts and checkpoints are the same);
    its gradient and optimiser state follow its strides.
    """
    w = layer.weight
    layer.weight = nn.Parameter(w.detach().t().contiguous().t(), requires_grad=w.requires_grad)
    return layer


def matmul(x: Tensor, y: Tensor) -> Tensor:
    """``x @ y`` for a dense or sparse ``x`` and a dense ``y`` ``(in, k)``."""
    if not is_sparse(x):
        return x @ y
    # the gather reads rows of y: a column-major y (a QR factor) takes about 7x more CPU,
    # with the same values (the sums run in the same order)
    return sparse_linear(x, y.contiguous().t())


__all__ = [
    "SPARSE_MIN_FEATURES",
    "csr_parts",
    "csr_tensor",
    "dense",
    "feature_major_",
    "is_sparse",
    "linear",
    "matmul",
    "nnz_rows",
    "scipy_csr",
    "sparse_linear",
]
