"""Shared pieces of the wide-sparse tests: a tiny multiome-like simulation with 3,000 peaks
and the guard that fails on any densified wide matrix (fixture ``no_densify`` in conftest)."""

from __future__ import annotations

import pytest
import scipy.sparse as sp
import torch

from mmint.data.simulate import simulate
from mmint.nn.sparse import SPARSE_MIN_FEATURES

N_PEAKS = 3000


class Densified(AssertionError):
    """A wide sparse matrix was made dense."""


def simulate_wide(n_cells: int = 240):
    """``n_cells`` cells of rna counts (60 genes) and ``N_PEAKS`` binary peaks, 4 types."""
    return simulate(
        n_cells=n_cells,
        n_types=4,
        n_major=2,
        modalities={"rna": ("counts", 60), "atac": ("binary", N_PEAKS)},
        n_links=2,
        seed=1,
    )


def patch_densifying(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch every densifying call (scipy ``toarray`` / ``todense``, torch ``to_dense``) to
    raise :class:`Densified` on a matrix at least ``SPARSE_MIN_FEATURES`` wide."""

    def guard(original):
        def call(self, *args, **kwargs):
            if self.shape[-1] >= SPARSE_MIN_FEATURES:
                raise Densified(f"{type(self).__name__} of shape {tuple(self.shape)} made dense")
            return original(self, *args, **kwargs)

        return call

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.coo_array):
        monkeypatch.setattr(cls, "toarray", guard(cls.toarray))
        monkeypatch.setattr(cls, "todense", guard(cls.todense))
    monkeypatch.setattr(torch.Tensor, "to_dense", guard(torch.Tensor.to_dense))
