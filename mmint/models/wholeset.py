"""Whole-set models: graph methods and wrappers of external tools (``embed_cells`` in
``contracts.md``).

They give latents, groups and translations for a set of cells at once, so they have no
per-batch outputs: :func:`mmint.evaluate.collect` calls :meth:`WholeSetIntegrator.embed_cells`
instead of walking batches, and ``mmint explain`` (which needs per-batch networks) refuses them
with a one-line error.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from torch import Tensor, nn

from mmint.errors import InputError
from mmint.metrics.prediction import PredictionAccumulator
from mmint.models.base import Batch, Integrator
from mmint.models.cell_outputs import Outputs


@dataclass
class Embedding:
    """What a whole-set model gives for a set of cells, in cell order.

    ``latents`` may be empty (a model with one joint encoder has no per-modality latent);
    ``extra`` holds score keys specific to the model (merged into ``metrics.json``).
    """

    joint: np.ndarray
    latents: dict[str, np.ndarray]
    groups: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: ``(dm, src, dst, cells) -> prediction of dst's model input for the cells``
Predictor = Callable[[Any, str, str, np.ndarray], np.ndarray]


def accumulate_predictions(
    dm: Any, cells: np.ndarray, pairs: list[tuple[str, str]], predict: Predictor
) -> dict[str, dict[str, PredictionAccumulator]]:
    """Stream ``predict`` over chunks of the cells that have both modalities of each pair into
    the accumulators :func:`mmint.evaluate.prediction_scores` reads (never one dense matrix)."""
    out: dict[str, dict[str, PredictionAccumulator]] = {}
    for src, dst in pairs:
        binary = dm.input_kind(dst) == "binary"
        acc = out.setdefault(src, {})[dst] = PredictionAccumulator(compute_auroc=binary)
        size = dm.prediction_rows([dst])  # a chunk's dense prediction stays bounded
        both = cells[(dm.masks[src][cells] > 0) & (dm.masks[dst][cells] > 0)]
        for i in range(0, len(both), size):
            chunk = both[i : i + size]
            acc.update(dm.inputs[dst][chunk], predict(dm, src, dst, chunk))
    return out


class WholeSetIntegrator(Integrator):
    """Base of the whole-set models: fitted with :meth:`fit_data` on training cells (val for
    any selection), outputs per set of cells with :meth:`embed_cells`.

    Subclasses set ``name``, ``not_applicable`` (``{metric: reason}``) and implement
    :meth:`fit_data`, :meth:`embed` and (when ``translates``) :meth:`predict_cells`.
    """

    trains_in_epochs = False
    groups_are_labels = False
    #: whether the model predicts one modality from another (else the prediction keys are null)
    translates = True
    #: metrics of ``metrics.json`` that do not apply to the model, with the reason
    not_applicable: dict[str, str] = {}
    #: facts about the fit written to ``metrics.json`` as ``model_info``
    model_info: dict[str, Any]

    @abstractmethod
    def fit_data(self, dm: Any) -> Self:
        """Fit on the training cells of ``dm`` (its val cells for any selection)."""

    @abstractmethod
    def embed(self, dm: Any, cells: np.ndarray) -> Embedding:
        """Joint latent, per-modality latents and groups of ``cells``, computed together."""

    def predict_cells(self, dm: Any, src: str, dst: str, cells: np.ndarray) -> np.ndarray:
        """Prediction of ``dst``'s model input from ``src`` alone for ``cells`` (which have
        both), shape ``(len(cells), n_features[dst])``."""
        raise NotImplementedError(f"{self.name} does not translate between modalities")

    def embed_cells(
        self,
        dm: Any,
        cells: np.ndarray,
        translations: bool = True,
        pairs: list[tuple[str, str]] | None = None,
    ) -> Outputs:
        """Everything :mod:`mmint.evaluate` scores, for ``cells`` at once."""
        cells = np.asarray(cells, dtype=np.int64)
        emb = self.embed(dm, cells)
        prediction = {}
        if translations and self.translates:
            mods = dm.modalities
            pairs = pairs if pairs is not None else [(s, d) for s in mods for d in mods]
            prediction = accumulate_predictions(dm, cells, pairs, self.predict_cells)
        return Outputs(cells, emb.joint, emb.latents, emb.groups, prediction, emb.extra)

    # ------------------------------------------------------------------ no per-batch outputs
    def _whole_set_only(self) -> InputError:
        return InputError(
            f"model '{self.name}' gives outputs for whole sets of cells only",
            "per-batch model interface (e.g. mmint explain)",
            "use embed_cells(dm, cells), or a per-batch model "
            "(unitednet, multivi, cvqvae, pca, mofa, svd_ridge, knn_transfer)",
        )

    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Not available: see :meth:`embed_cells`."""
        raise self._whole_set_only()

    def joint_latent(self, batch: Batch) -> Tensor:
        """Not available: see :meth:`embed_cells`."""
        raise self._whole_set_only()

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """Not available: see :meth:`predict_cells`."""
        raise self._whole_set_only()

    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        """Not available: a whole-set model has no per-batch network to explain."""
        raise self._whole_set_only()
