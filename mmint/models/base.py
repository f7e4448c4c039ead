"""The common model interface: the only thing callbacks, benchmarks and ``mmint.explain`` use.

Every integrator implements :class:`Integrator`. Trainable ones are also LightningModules
(:class:`IntegratorModule`) and log their model-selection loss as ``val/loss`` in
``validation_step``; the fit pipeline checkpoints on it. Batches are dicts keyed by
:mod:`mmint.keys`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.memory import keep_freed_memory

Batch = dict[str, Tensor]


class Integrator(ABC):
    """Per-modality latents, a joint latent, cross-modal translation, optional groups."""

    #: short model name used in run directories and ``obsm`` keys
    name: str = "model"
    #: whether the model trains in epochs (curves, epoch cost keys); ``False`` for baselines
    trains_in_epochs: bool = True
    #: whether batches may hold sparse (CSR) inputs of wide sparse modalities
    accepts_sparse: bool = False
    #: whether :meth:`predict_groups` gives label codes (a classifier) rather than clusters
    groups_are_labels: bool = False
    #: cost keys the model measured itself (e.g. an external tool's epochs), for ``metrics.json``
    fit_cost: dict[str, Any]
    spec: DataSpec

    @property
    def modalities(self) -> list[str]:
        """Modality names in the model's fixed order."""
        return list(self.spec.modalities)

    @abstractmethod
    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Per-modality latent of every cell of the batch, ``{modality: (n, d)}``."""

    @abstractmethod
    def joint_latent(self, batch: Batch) -> Tensor:
        """Joint latent ``(n, d)`` from the modalities each cell has."""

    @abstractmethod
    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """Prediction of ``dst`` from ``src`` alone, in ``dst``'s model-input space.

        ``src == dst`` is the reconstruction.
        """

    def predict_groups(self, batch: Batch) -> Tensor | None:
        """Group (cluster or class) code per cell, or ``None`` when the model has no group head."""
        return None

    # ------------------------------------------------------------- hooks of mmint.explain
    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        """Explain hook: ``src``'s model input ``(n, p_src)`` -> :meth:`translate`'s prediction
        of ``dst`` ``(n, p_dst)`` as one ``nn.Module`` (every cell observed in ``src``).

        Non-linearities applied outside modules must be modules here (``nn.Sigmoid``), so that
        shap's ``DeepExplainer`` can walk the graph. ``batch_code`` is the batch used by
        decoders that take the batch as a covariate (ignored by the others).
        """
        raise InputError(
            f"model '{self.name}' has no translation hook for explain",
            "Integrator.translator",
            "explain a model that implements it (see docs/architecture.md)",
        )

    def group_network(self) -> nn.Module | None:
        """Explain hook: concatenated model inputs (modality order) -> group probabilities
        ``(n, K)`` of :meth:`predict_groups`' head, or ``None`` without a group head."""
        return None

    def group_count(self) -> int | None:
        """Number of group codes :meth:`predict_groups` can give (``None``: not fixed by the
        model, e.g. no group head)."""
        return None


class IntegratorModule(Integrator, L.LightningModule):
    """Base LightningModule for trainable integrators (manual optimization by default)."""

    def __init__(self, spec: DataSpec | dict) -> None:
        super().__init__()
        self.spec = DataSpec.from_any(spec)
        self.automatic_optimization = False

    def on_train_start(self) -> None:
        """Keep freed memory for reuse (:func:`mmint.memory.keep_freed_memory`): every batch
        allocates the same large tensors again."""
        keep_freed_memory()

    def epoch_values(self) -> dict[str, float]:
        """Numbers of the finished training epoch for ``curves.csv`` (e.g. learned loss
        weights); none by default."""
        return {}

    @torch.no_grad()
    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Joint latent per batch (used by ``Trainer.predict``)."""
        return {"joint": self.joint_latent(batch)}
