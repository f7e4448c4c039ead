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
from sklearn.decomposition import PCA
from torch import Tensor

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.models.base import Batch, Integrator
from mmint.models.persist import SavedByAttributes


class PCABaseline(SavedByAttributes, Integrator):
    """Per-modality PCA (fitted on training cells) and ridge regression between modalities.

    Parameters
    ----------
    spec
        Data description.
    n_components
        Principal components per modality (capped by features and training cells).
    ridge_alpha
        L2 penalty of the ridge regression from a source's PCs to a target's model input.
    seed
        Seed of the randomised SVD.
    """

    name = "pca"
    trains_in_epochs = False
    groups_are_labels = False
    fitted_attributes = ("pcas", "scale", "ridge")

    def __init__(
        self, spec: DataSpec | dict, n_components: int = 30, ridge_alpha: float = 1.0, seed: int = 0
    ) -> None:
        self.spec = DataSpec.from_any(spec)
        self.hparams = {"n_components": n_components, "ridge_alpha": ridge_alpha, "seed": seed}
        self.pcas: dict[str, PCA] = {}
        self.scale: dict[str, float] = {}
        self.ridge: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ fitting
    def fit_data(self, dm: Any) -> PCABaseline:
        """Fit PCA per modality and all ridge maps on the training cells of ``dm``."""
        train = dm.cells("train")
        scores: dict[str, np.ndarray] = {}
        for m in self.modalities:
            cells = train[dm.masks[m][train] > 0]
            x = dm.inputs[m][cells]
            n = min(self.hparams["n_components"], x.shape[1] - 1, len(cells) - 1)
            solver = "arpack" if sp.issparse(x) else "auto"
            pca = PCA(n_components=max(1, n), svd_solver=solver, random_state=self.hparams["seed"])
            z = pca.fit_transform(x)
            self.pcas[m] = pca
            # each modality weighs the same in the joint latent, whatever its feature count
            self.scale[m] = float(np.sqrt(max(z.var(axis=0).sum(), 1e-12)))
            scores[m] = np.zeros((dm.data.n_cells, z.shape[1]))
            scores[m][cells] = z
        for src in self.modalities:
            for dst in self.modalities:
                both = train[(dm.masks[src][train] > 0) & (dm.masks[dst][train] > 0)]
                y = dm.inputs[dst][both]
                self.ridge[(src, dst)] = _ridge(scores[src][both], y, self.hparams["ridge_alpha"])
        return self

    # ------------------------------------------------------------------ interface
    def _pcs(self, batch: Batch, m: str) -> np.ndarray:
        z = self.pcas[m].transform(batch[m].cpu().numpy())
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
        pred = self.pcas[src].transform(batch[src].cpu().numpy()) @ coef + intercept
        if self.spec.kinds[dst] == "binary":
            pred = np.clip(pred, 0.0, 1.0)
        return torch.from_numpy(pred.astype(np.float32))


def _ridge(z: np.ndarray, y: Any, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge (intercept unpenalised); ``y`` may be sparse."""
    z_mean = z.mean(axis=0)
    zc = z - z_mean
    y_mean = np.asarray(y.mean(axis=0)).ravel()
    zty = np.asarray(zc.T @ y) if not sp.issparse(y) else np.asarray((y.T @ zc).T)
    gram = zc.T @ zc + alpha * np.eye(z.shape[1])
    coef = np.linalg.solve(gram, zty)
    return coef, y_mean - z_mean @ coef
