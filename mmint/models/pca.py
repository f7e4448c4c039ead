"""The PCA floor: per-modality PCA, concatenated as the joint latent; ridge translation.

No training loop. It is in every benchmark so that each report says how far the deep models
are above what a linear method gets (on Patch-seq, k-means on RNA PCs beats the original
UnitedNet).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.models.base import Batch, Integrator
from mmint.models.hparams import record_hparams
from mmint.models.persist import SavedByAttributes
from mmint.nn.projection import InputProjection
from mmint.nn.sparse import csr_tensor


class PCABaseline(SavedByAttributes, Integrator):
    """Per-modality PCA (fitted on training cells) and ridge regression between modalities.

    Nothing wide is made dense: a sparse modality's PCA is a randomised SVD that centres it
    implicitly (:class:`mmint.nn.projection.InputProjection`, the CVQVAE-style ``pca`` input's;
    exact eigendecomposition up to 4,096 features), batches come as sparse tensors, and the
    ridge maps regress from the source's PCs: they read the target only through the sparse
    product ``Y^T Z`` over row blocks, and predict a wide target batch by batch.

    Parameters
    ----------
    spec
        Data description.
    n_components
        Principal components per modality (capped by features and training cells).
    ridge_alpha
        L2 penalty of the ridge regression from a source's PCs to a target's model input.
    seed
        Seed of the subsample of :attr:`fit_max_cells` (the randomised SVD has its own fixed
        seed).
    fit_max_cells
        The principal axes are fitted on at most this many training cells (a seeded random
        subsample, recorded in ``model_info``); the ridge maps use every training cell.
    """

    name = "pca"
    trains_in_epochs = False
    groups_are_labels = False
    #: wide sparse inputs come as sparse batches (projected without densifying)
    accepts_sparse = True
    fitted_attributes = ("projections", "scale", "ridge", "model_info")

    def __init__(
        self,
        spec: DataSpec | dict,
        n_components: int = 30,
        ridge_alpha: float = 1.0,
        seed: int = 0,
        fit_max_cells: int = 50_000,
    ) -> None:
        self.spec = DataSpec.from_any(spec)
        record_hparams(self, locals())
        self.projections: dict[str, InputProjection] = {}
        self.scale: dict[str, float] = {}
        self.ridge: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.model_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting
    def fit_data(self, dm: Any) -> PCABaseline:
        """Fit PCA per modality and all ridge maps on the training cells of ``dm``."""
        train = dm.cells("train")
        rng = np.random.default_rng(self.hparams["seed"])
        cap = int(self.hparams["fit_max_cells"])
        scores: dict[str, np.ndarray] = {}
        fitted_on = {}
        for m in self.modalities:
            cells = train[dm.masks[m][train] > 0]
            fit = cells if len(cells) <= cap else np.sort(rng.choice(cells, cap, replace=False))
            fitted_on[m] = int(len(fit))
            n = min(self.hparams["n_components"], dm.inputs[m].shape[1] - 1, len(fit) - 1)
            proj = InputProjection(dm.inputs[m].shape[1], max(1, n)).double()
            proj.fit(_tensor(dm.inputs[m][fit]))
            self.projections[m] = proj
            scores[m] = np.zeros((dm.data.n_cells, proj.k))
            for i in range(0, len(cells), _BLOCK_CELLS):
                chunk = cells[i : i + _BLOCK_CELLS]
                scores[m][chunk] = self._project(m, _tensor(dm.inputs[m][chunk]))
            z = scores[m][cells]
            # each modality weighs the same in the joint latent, whatever its feature count
            self.scale[m] = float(np.sqrt(max(z.var(axis=0).sum(), 1e-12)))
        for src in self.modalities:
            for dst in self.modalities:
                both = train[(dm.masks[src][train] > 0) & (dm.masks[dst][train] > 0)]
                self.ridge[(src, dst)] = _ridge(
                    scores[src][both], dm.inputs[dst], both, self.hparams["ridge_alpha"]
                )
        self.model_info = {"pca_fitted_on_cells": fitted_on, "pca_fit_max_cells": cap}
        return self

    # ------------------------------------------------------------------ interface
    def _project(self, m: str, x: Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.projections[m](x.to(torch.float64)).numpy()

    def _pcs(self, batch: Batch, m: str) -> np.ndarray:
        z = self._project(m, batch[m].cpu())
        return z * batch[keys.mask_key(m)].cpu().numpy()[:, None]

    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Per-modality PCs (zeros for cells without the modality)."""
        return {
            m: torch.from_numpy(self._pcs(batch, m).astype(np.float32)) for m in self.modalities
        }

    def joint_latent(self, batch: Batch) -> Tensor:
        """Concatenated per-modality PCs, each modality scaled to unit total variance."""
        parts = [self._pcs(batch, m) / self.scale[m] for m in self.modalities]
        return torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """Ridge prediction of ``dst``'s model input from ``src``'s PCs (binary: clipped to [0, 1])."""
        coef, intercept = self.ridge[(src, dst)]
        pred = self._project(src, batch[src].cpu()) @ coef + intercept
        if self.spec.kinds[dst] == "binary":
            pred = np.clip(pred, 0.0, 1.0)
        return torch.from_numpy(pred.astype(np.float32))

    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        """The unclipped ridge map ``src`` input -> ``dst`` input as one linear layer.

        Used by :mod:`mmint.explain` for attributions; equals :meth:`translate` except that
        a binary target is not clipped to [0, 1]. ``batch_code`` is ignored (no batch input).
        """
        proj = self.projections[src]
        coef, intercept = self.ridge[(src, dst)]
        components = proj.components.double().numpy()
        weight = components @ coef  # (p_src, p_dst)
        bias = np.ravel(intercept) - proj.mean.double().numpy() @ weight
        layer = nn.Linear(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight.T.astype(np.float32)))
            layer.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        return layer


#: cells per block when projecting or regressing over all training cells
_BLOCK_CELLS = 8192


def _tensor(x: Any) -> Tensor:
    """Rows as a torch tensor: CSR for a scipy sparse matrix (never densified)."""
    return csr_tensor(x) if sp.issparse(x) else torch.from_numpy(np.asarray(x))


def _ridge(z: np.ndarray, y: Any, rows: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge of ``y[rows]`` on ``z`` (intercept unpenalised); ``y`` (dense,
    sparse or read from disk) is read in row blocks, through ``Y^T Z_c`` only."""
    z_mean = z.mean(axis=0)
    zc = z - z_mean
    zty = np.zeros((z.shape[1], y.shape[1]))
    y_sum = np.zeros(y.shape[1])
    for i in range(0, len(rows), _BLOCK_CELLS):
        block = y[rows[i : i + _BLOCK_CELLS]]
        part = zc[i : i + _BLOCK_CELLS]
        if sp.issparse(block):
            zty += np.asarray((block.T @ part).T)
        else:
            zty += part.T @ np.asarray(block, dtype=np.float64)
        y_sum += np.asarray(block.sum(axis=0), dtype=np.float64).ravel()
    gram = zc.T @ zc + alpha * np.eye(z.shape[1])
    coef = np.linalg.solve(gram, zty)
    return coef, y_sum / max(1, len(rows)) - z_mean @ coef
