"""Small array helpers shared by the comparators."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def dense64(x: Any) -> np.ndarray:
    """``x`` (numpy or scipy sparse) as a dense float64 array.

    For the comparators whose method is dense by definition (MOFA+'s views, WNN's scaled RNA,
    kernel ridge targets below ``max_direct_features``); the per-batch models and the metrics
    never call it on a wide sparse matrix.
    """
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
