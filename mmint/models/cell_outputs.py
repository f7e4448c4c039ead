"""What a model gives for a set of cells: the one record :mod:`mmint.evaluate` scores.

Here rather than in :mod:`mmint.evaluate` so that whole-set models
(:mod:`mmint.models.wholeset`) can build it while :mod:`mmint.evaluate` tells them apart with
``isinstance`` (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmint.metrics.prediction import PredictionAccumulator


@dataclass
class Outputs:
    """What a model gives for a set of cells (numpy, in cell order)."""

    cells: np.ndarray
    joint: np.ndarray
    latents: dict[str, np.ndarray]
    groups: np.ndarray | None
    prediction: dict[str, dict[str, PredictionAccumulator]] = field(default_factory=dict)
    #: extra score keys a whole-set model reports for these cells (e.g. WNN modality weights)
    extra: dict[str, Any] = field(default_factory=dict)
