"""Small array helpers shared by the comparators."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def dense64(x: Any) -> np.ndarray:
    """``x`` (numpy or scipy sparse) as a dense float64 array."""
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
