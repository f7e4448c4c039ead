"""The common part of the scvi-tools adapters: training on mmint's cells, persistence, cost.

Each adapter builds the scvi-tools model on all cells of the data module (so its latents and
predictions exist for any cell), trains it on mmint's training cells only with mmint's
validation cells as scvi-tools' validation set (``external_indexing``), and reports its
epochs and seconds per epoch. A checkpoint holds the trained module's weights; loading it
rebuilds the scvi-tools model on the data module it is next used with.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any, Self

import numpy as np

from mmint.callbacks.timing import Timing
from mmint.models.optional import package_versions, require
from mmint.models.persist import SavedByAttributes
from mmint.models.scvi_tools.predict import predictions
from mmint.models.wholeset import WholeSetIntegrator


class _ScviTiming(Timing):
    """mmint's epoch timer, counting cells from scvi-tools' batches (keyed ``X``; scANVI's
    semi-supervised loader yields ``(all cells, labelled cells)``: the first is counted)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        batch = batch[0] if isinstance(batch, list | tuple) else batch
        self.cells += int(batch["X"].shape[0])


class ScviIntegrator(SavedByAttributes, WholeSetIntegrator):
    """Base of the scvi-tools adapters.

    Subclasses implement :meth:`build` (set up and create the untrained scvi-tools model on
    the data module's cells) and :meth:`train_scvi` (train it), and :meth:`embed`.
    """

    fitted_attributes = ("module_state", "model_info", "fit_cost")
    #: ``(module, tensors) -> {role: prediction}`` (see :mod:`.predict`), as a staticmethod
    generate: Any = None

    def __init__(self, spec: Any, seed: int = 0, **hparams: Any) -> None:
        from mmint.data.spec import DataSpec

        self.spec = DataSpec.from_any(spec)
        self.hparams = {**hparams, "seed": seed}
        self.module_state: dict[str, Any] | None = None
        self.model_info: dict[str, Any] = {}
        self.fit_cost: dict[str, Any] = {}
        self._scvi: Any = None
        self._dm_id: int | None = None
        self._cache: dict[Any, Any] = {}
        self.roles: dict[str, str] = {}

    # ------------------------------------------------------------------ scvi-tools model
    def scvi(self) -> Any:
        """The scvi module, with mmint's settings (one data-loader process, the seed)."""
        scvi = require("scvi", self.name)
        scvi.settings.dl_num_workers = 0
        scvi.settings.seed = int(self.hparams["seed"])
        return scvi

    @abstractmethod
    def build(self, dm: Any, for_loading: bool = False) -> Any:
        """Set up the data module's cells for scvi-tools and create the (untrained) model
        (``for_loading``: the architecture a checkpoint's weights load into)."""

    @abstractmethod
    def train_scvi(self, model: Any, dm: Any, trainer_kwargs: dict[str, Any]) -> Any:
        """Train the scvi-tools model on mmint's training cells; return the trained model."""

    def trainer_kwargs(self, timing: Timing) -> dict[str, Any]:
        """Lightning options every adapter passes to scvi-tools' ``train``."""
        progress = os.environ.get("CI", "").lower() not in ("1", "true", "yes")
        return {
            "accelerator": "cpu",
            "devices": 1,
            "callbacks": [timing],
            "enable_progress_bar": bool(self.hparams.get("progress_bar", False)) and progress,
            # scvi-tools' default logger keeps the loss history in memory (nothing on disk)
            "enable_model_summary": False,
            "enable_checkpointing": False,
        }

    @staticmethod
    def split_indices(dm: Any, train_extra: np.ndarray | None = None) -> list[np.ndarray]:
        """``[train, val, test]`` cell indices for scvi-tools' ``external_indexing``
        (``train_extra``: more cells in the training set, e.g. an unlabelled target)."""
        train = dm.split["train"]
        if train_extra is not None and len(train_extra):
            train = np.sort(np.concatenate([train, train_extra]))
        val, test = dm.split["val"], dm.split["test"]
        test = np.setdiff1d(test, train)
        return [np.asarray(s, dtype=np.int64) for s in (train, val, test)]

    @staticmethod
    def splitter_kwargs(
        split: list[np.ndarray], batch_size: int, labelled: np.ndarray | None = None
    ) -> dict[str, Any]:
        """scvi-tools' data-splitter options: ``external_indexing``, plus ``drop_last`` only
        when the training cells (or the labelled ones among them) would leave a last batch of
        one cell, which BatchNorm layers cannot train on (scvi-tools only warns)."""
        sizes = [len(split[0])]
        if labelled is not None:
            sizes.append(len(np.intersect1d(split[0], labelled)))
        out: dict[str, Any] = {"external_indexing": split}
        if any(n % batch_size == 1 for n in sizes):
            out["drop_last"] = True
        return out

    def fit_data(self, dm: Any) -> Self:
        """Build and train on the training cells of ``dm``."""
        scvi = self.scvi()
        timing = _ScviTiming()
        model = self.train_scvi(self.build(dm), dm, self.trainer_kwargs(timing))
        self._attach(model, dm)
        self.module_state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
        self.fit_cost = timing.summary()
        history = getattr(model, "history", None) or {}
        self.model_info = {
            **self.model_info,
            "implementation": f"scvi-tools {scvi.__version__} {type(model).__name__}",
            "epochs_trained": self.fit_cost.get("epochs"),
            "validation": "mmint's validation cells (scvi-tools external_indexing)",
            "final_train_loss": _last(history, ("train_loss_epoch", "elbo_train")),
            "final_validation_loss": _last(history, ("validation_loss", "elbo_validation")),
            "versions": package_versions("scvi-tools"),
        }
        return self

    def _attach(self, model: Any, dm: Any) -> None:
        self._scvi, self._dm_id, self._cache = model, id(dm), {}
        model.module.eval()

    def model(self, dm: Any) -> Any:
        """The trained scvi-tools model set up on ``dm`` (rebuilt from the checkpointed
        weights when this adapter was loaded, or is used with another data module)."""
        if self._scvi is None or self._dm_id != id(dm):
            if self.module_state is None:
                raise RuntimeError(f"{self.name} is not fitted")
            self.scvi()
            model = self.build(dm, for_loading=True)
            model.module.load_state_dict(self.module_state)
            model.is_trained_ = True
            self._attach(model, dm)
        return self._scvi

    def predict_cells(self, dm: Any, src: str, dst: str, cells: np.ndarray) -> np.ndarray:
        """``dst`` from ``src`` alone (see :mod:`mmint.models.scvi_tools.predict`); every
        pair is computed at once for a set of cells and kept until the next set."""
        key = (id(dm), cells.tobytes())
        if key not in self._cache:
            self._cache = {key: predictions(self.model(dm), self.roles, cells, self.generate)}
        return self._cache[key][(src, dst)]


def _last(history: dict, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        frame = history.get(key)
        if frame is not None and len(frame):
            value = float(np.asarray(frame).ravel()[-1])
            return value if np.isfinite(value) else None
    return None
