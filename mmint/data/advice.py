"""Warnings about inputs that load fine but that the models handle badly, each with its fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

#: a ``continuous`` modality this wide ...
WIDE_FEATURES = 2048
#: ... with at least this fraction of zeros gets :func:`wide_sparse_continuous`'s warning
MOSTLY_ZEROS = 0.9


def zero_fraction(x: Any, rows: np.ndarray, n_entries: int = 2**24) -> float:
    """Fraction of zero entries among the ``rows`` (boolean mask) of ``x``, in row blocks."""
    n_rows, nonzero = int(rows.sum()), 0
    step = max(1, n_entries // max(1, x.shape[1]))
    for r0 in range(0, x.shape[0], step):
        block = x[r0 : r0 + step][rows[r0 : r0 + step]]
        nonzero += block.count_nonzero() if sp.issparse(block) else np.count_nonzero(block)
    return 1.0 - nonzero / max(1, n_rows * x.shape[1])


def wide_sparse_continuous(name: str, kind: str, x: Any, rows: np.ndarray) -> str | None:
    """The warning for a ``continuous`` modality that is wide and mostly zeros, else ``None``.

    Read as dense Gaussian values, such a modality makes the deep models' first and last layers
    huge (slow epochs, large checkpoints) and they tend to find no structure in it (measured in
    benchmarks/results/speed.md: chance-level ARI on 2,600 SNARE-seq cells with the peaks
    declared continuous, where the PCA floor finds the cell types).
    """
    if kind != "continuous" or x.shape[1] < WIDE_FEATURES:
        return None
    zeros = zero_fraction(x, rows)
    if zeros < MOSTLY_ZEROS:
        return None
    return (
        f"'{name}' is declared continuous but is {100 * zeros:.1f}% zeros over "
        f"{x.shape[1]:,} features: the deep models read it as dense values (slow, large "
        "checkpoints, often no better than chance) - declare it binary if it is presence "
        f"(peaks: 'data.kinds={{..., {name}: binary}}'), or reduce it for any model: "
        f"'data.reduce={{{name}: {{method: lsi, n_components: 50}}}}' (svd for signed values)"
    )
