"""Checkpoints of models fitted outside Lightning (the PCA floor and the comparators).

One ``torch.save`` file per checkpoint holding the data spec, the hyper-parameters, the fitted
attributes named by the model's ``fitted_attributes`` and the data module's fitted transforms
(under ``datamodule``, where ``mmint explain`` looks for them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import torch

from mmint.data.spec import DataSpec
from mmint.io import atomic_path


class SavedByAttributes:
    """``save`` / ``load`` for a model built as ``cls(spec, **hparams)`` plus fitted attributes."""

    #: attributes that hold the fitted state (set by ``fit_data``)
    fitted_attributes: tuple[str, ...] = ()
    spec: DataSpec
    hparams: dict[str, Any]

    def save(self, path: str | Path, dm: Any | None = None) -> None:
        """Save the fitted model (and the data module's fitted transforms), atomically."""
        path = Path(path)
        state = {
            "spec": self.spec.to_dict(),
            "hyper_parameters": dict(self.hparams),
            "fitted": {k: getattr(self, k) for k in self.fitted_attributes},
            "datamodule": dm.state_dict() if dm is not None else None,
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load a model saved by :meth:`save`."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = cls(state["spec"], **state["hyper_parameters"])
        for key, value in state["fitted"].items():
            setattr(model, key, value)
        return model
