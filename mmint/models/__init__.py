"""Integrators by name. Imports are lazy so that ``import mmint`` stays fast."""

from __future__ import annotations

import importlib
from typing import Any

from mmint.data.spec import DataSpec
from mmint.models.base import Integrator, IntegratorModule

#: model name -> "module:Class"
MODELS: dict[str, str] = {
    "unitednet": "mmint.models.unitednet.plan:UnitedNet",
    "multivi": "mmint.models.multivi.plan:MultiVI",
    "cvqvae": "mmint.models.cvqvae.plan:CVQVAE",
    "pca": "mmint.models.pca:PCABaseline",
    # comparators: the field's own tools (optional extras; see docs/comparators.md)
    "wnn": "mmint.models.wnn:WNN",
    "mofa": "mmint.models.mofa:MOFA",
    "svd_ridge": "mmint.models.svd_ridge:SVDRidge",
    "knn_transfer": "mmint.models.knn_transfer:KNNTransfer",
    "scvi_multivi": "mmint.models.scvi_tools.multivi:ScviMultiVI",
    "scvi_totalvi": "mmint.models.scvi_tools.totalvi:ScviTotalVI",
    "scvi_scanvi": "mmint.models.scvi_tools.scanvi:ScviScanVI",
    # the original UnitedNet run by path from $MMINT_UNITEDNET_ORIGINAL (GPL-3.0, never copied)
    "unitednet_original": "mmint.models.unitednet_original:UnitedNetOriginal",
}


def model_class(name: str) -> type[Integrator]:
    """Return the class registered under ``name``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; use one of {sorted(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, spec: DataSpec, **hparams: Any) -> Integrator:
    """Build the model ``name`` for data described by ``spec`` with hyper-parameters."""
    return model_class(name)(spec, **hparams)


__all__ = ["MODELS", "Integrator", "IntegratorModule", "build_model", "model_class"]
