"""Model inputs do not depend on the CPU: the log transforms round like an exact computation.

numpy's float32 ``log1p`` is vectorised per instruction set (AVX-512 and AVX2 results differ in
the last bit), which made the golden step differ between two hosts of the same kind. The
transforms compute in float64 and round once to float32; here they must equal an
extended-precision reference rounded to float32, entry for entry, on any CPU.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mmint.data.modality import TARGET_SUM, _clr, _scaled_log1p


def _counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.negative_binomial(2, 0.05, size=(300, 200)).astype(np.float32)
    x[rng.random(x.shape) < 0.6] = 0.0
    return x


def _exact_log1p(y: np.ndarray) -> np.ndarray:
    """log1p in extended precision (x87 80-bit ``long double``), rounded once to float32."""
    return np.log1p(np.asarray(y, dtype=np.longdouble)).astype(np.float32)


def test_normalised_log_counts_are_correctly_rounded():
    x = _counts()
    factor = TARGET_SUM / np.maximum(x.sum(axis=1, dtype=np.float64), 1.0)
    want = _exact_log1p(x.astype(np.float64) * factor[:, None])
    np.testing.assert_array_equal(_scaled_log1p(x, factor), want)
    sparse = _scaled_log1p(sp.csr_matrix(x), factor)
    np.testing.assert_array_equal(sparse.toarray(), want)


def test_tfidf_and_clr_are_correctly_rounded():
    x = _counts(1)
    row = 1.0 / np.maximum(x.sum(axis=1, dtype=np.float64), 1.0)
    idf = np.log1p(x.shape[0] / (1.0 + (x > 0).sum(axis=0)))
    want = _exact_log1p(x.astype(np.float64) * row[:, None] * (idf * TARGET_SUM)[None, :])
    np.testing.assert_array_equal(_scaled_log1p(x, row, idf * TARGET_SUM), want)
    logs = np.log1p(x.astype(np.longdouble))
    clr = (logs - logs.mean(axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_allclose(_clr(x).astype(np.float32), clr, rtol=0, atol=1e-6)
