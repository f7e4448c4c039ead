"""The wide-sparse-continuous warning: when it fires (counted against numpy), and that validate
prints it as one line."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mmint.data.advice import MOSTLY_ZEROS, WIDE_FEATURES, wide_sparse_continuous, zero_fraction


@pytest.mark.parametrize("sparse", [False, True])
def test_zero_fraction_counts_only_the_given_rows(sparse):
    rng = np.random.default_rng(0)
    x = rng.random((50, 30)) * (rng.random((50, 30)) < 0.2)
    rows = rng.random(50) < 0.6
    want = float(np.mean(x[rows] == 0))
    got = zero_fraction(sp.csr_matrix(x) if sparse else x, rows, n_entries=90)  # 3-row blocks
    assert got == pytest.approx(want, abs=1e-12)


def test_fires_for_wide_mostly_zero_continuous_only():
    rng = np.random.default_rng(1)
    n, p = 40, WIDE_FEATURES
    density = (1 - MOSTLY_ZEROS) / 2
    x = sp.random(n, p, density=density, format="csr", random_state=1)
    rows = np.ones(n, bool)
    line = wide_sparse_continuous("atac", "continuous", x, rows)
    assert line is not None and "\n" not in line and "binary" in line and "data.reduce" in line
    assert wide_sparse_continuous("atac", "binary", x, rows) is None
    assert wide_sparse_continuous("atac", "continuous", x[:, : p - 1], rows) is None  # narrow
    dense_enough = rng.random((n, p)) * (rng.random((n, p)) < 2 * (1 - MOSTLY_ZEROS))
    assert wide_sparse_continuous("atac", "continuous", dense_enough, rows) is None
