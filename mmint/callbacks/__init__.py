"""Thin adapters from the model interface to :mod:`mmint.metrics` and the loggers."""

from mmint.callbacks.curves import IntegrationMetrics, LatentDistanceCurve
from mmint.callbacks.timing import Timing

__all__ = ["IntegrationMetrics", "LatentDistanceCurve", "Timing"]
