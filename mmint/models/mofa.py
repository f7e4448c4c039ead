"""MOFA+ (Argelaguet et al. 2020) through mofapy2: factors as the latent, cross-modal prediction
through the shared factors and the target's loadings.

MOFA+ is fitted on the training cells (one group, every view Gaussian, each view centred and
scaled to unit total variance so that no modality dominates by its feature count). Factors of
any cell are the posterior mean given the fitted loadings ``W_m`` and noise precisions
``tau_m`` under MOFA's N(0, I) factor prior::

    z = (sum_m W_m' T_m W_m + I)^-1 sum_m W_m' T_m (x_m - mu_m) / s_m

over the modalities the cell has (the joint latent), or over one modality (its per-modality
latent, in the same factor space). Prediction of ``dst`` from ``src``: ``z_src W_dst' s_dst +
mu_dst``. For training cells these factors match mofapy2's own (tests check it).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor, nn

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.models.arrays import dense64
from mmint.models.base import Batch, Integrator
from mmint.models.hparams import record_hparams
from mmint.models.optional import package_versions, require
from mmint.models.persist import SavedByAttributes


class MOFA(SavedByAttributes, Integrator):
    """MOFA+ factors (mofapy2) fitted on training cells; per-cell posterior-mean projection.

    Parameters
    ----------
    spec
        Data description.
    n_factors
        Factors MOFA+ starts with (inactive ones keep zero loadings).
    max_iter
        Variational iterations (MOFA+'s ``iter``); it stops earlier at convergence.
    convergence_mode
        ``fast``, ``medium`` or ``slow`` (mofapy2's ELBO tolerance).
    scale_views
        Scale each centred view to unit total variance before MOFA+.
    spikeslab_weights, ard_weights
        MOFA+'s priors on the loadings (its defaults).
    seed
        Seed of mofapy2.
    """

    name = "mofa"
    trains_in_epochs = False
    groups_are_labels = False
    fitted_attributes = ("mean", "scale", "loadings", "precision", "model_info")

    def __init__(
        self,
        spec: DataSpec | dict,
        n_factors: int = 15,
        max_iter: int = 1000,
        convergence_mode: str = "fast",
        scale_views: bool = True,
        spikeslab_weights: bool = True,
        ard_weights: bool = True,
        seed: int = 0,
    ) -> None:
        self.spec = DataSpec.from_any(spec)
        record_hparams(self, locals())
        self.mean: dict[str, np.ndarray] = {}
        self.scale: dict[str, float] = {}
        self.loadings: dict[str, np.ndarray] = {}
        self.precision: dict[str, np.ndarray] = {}
        self.model_info: dict[str, Any] = {}
        #: mofapy2's own factors of the training cells (kept for checks, not saved)
        self.train_factors: np.ndarray | None = None

    # ------------------------------------------------------------------ fitting
    def fit_data(self, dm: Any) -> Self:
        """Fit MOFA+ on the training cells of ``dm`` that have every modality (MOFA+ takes
        missing values, but its factors here are only for complete training cells)."""
        require("mofapy2", self.name)
        from mofapy2.run.entry_point import entry_point

        train = dm.cells("train")
        for m in self.modalities:
            train = train[dm.masks[m][train] > 0]
        views = []
        for m in self.modalities:
            x = dense64(dm.inputs[m][train])
            self.mean[m] = x.mean(axis=0)
            xc = x - self.mean[m]
            self.scale[m] = float(xc.std()) if self.hparams["scale_views"] else 1.0
            self.scale[m] = max(self.scale[m], 1e-12)
            views.append([xc / self.scale[m]])
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # mofapy2 prints its whole configuration
            ent = entry_point()
            ent.set_data_options(scale_views=False, center_groups=False)
            ent.set_data_matrix(
                views, likelihoods=["gaussian"] * len(views), views_names=self.modalities
            )
            ent.set_model_options(
                factors=self.hparams["n_factors"],
                spikeslab_weights=self.hparams["spikeslab_weights"],
                ard_weights=self.hparams["ard_weights"],
            )
            ent.set_train_options(
                iter=self.hparams["max_iter"],
                convergence_mode=self.hparams["convergence_mode"],
                seed=self.hparams["seed"],
                quiet=True,
                verbose=False,
            )
            ent.build()
            ent.run()
        nodes = ent.model.getNodes()
        weights = nodes["W"].getExpectation()
        taus = nodes["Tau"].getExpectation()
        for i, m in enumerate(self.modalities):
            self.loadings[m] = np.asarray(weights[i], dtype=np.float64)
            self.precision[m] = np.asarray(taus[i], dtype=np.float64).reshape(-1, len(weights[i]))[
                0
            ]
        self.train_factors = np.asarray(nodes["Z"].getExpectation(), dtype=np.float64)
        stats = ent.model.getTrainingStats()
        active = np.any(np.abs(np.concatenate(list(self.loadings.values()))) > 1e-8, axis=0)
        self.model_info = {
            "implementation": "mofapy2 (MOFA+), one group, Gaussian views, factors of any "
            "cell = posterior mean given the training fit",
            # mofapy2 evaluates the ELBO every few iterations: the last evaluation is where it stopped
            "iterations": int(np.flatnonzero(~np.isnan(np.asarray(stats["elbo"], float)))[-1] + 1),
            "active_factors": int(active.sum()),
            "n_train_complete": int(len(train)),
            "versions": package_versions("mofapy2"),
        }
        return self

    # ------------------------------------------------------------------ factors
    def factors(self, xs: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
        """Posterior-mean factors of cells from the modalities in ``xs`` (model inputs),
        using for each cell only the modalities its mask marks present."""
        n = len(next(iter(xs.values())))
        k = next(iter(self.loadings.values())).shape[1]
        precision_matrix = np.zeros((n, k, k)) + np.eye(k)
        rhs = np.zeros((n, k))
        for m, x in xs.items():
            w, tau = self.loadings[m], self.precision[m]
            present = masks[m] > 0
            wtw = (w * tau[:, None]).T @ w
            precision_matrix[present] += wtw
            rhs[present] += ((x[present] - self.mean[m]) / self.scale[m]) @ (w * tau[:, None])
        return np.linalg.solve(precision_matrix, rhs[..., None])[..., 0]

    def _factors(self, batch: Batch, modalities: list[str]) -> np.ndarray:
        xs = {m: batch[m].cpu().numpy().astype(np.float64) for m in modalities}
        masks = {m: batch[keys.mask_key(m)].cpu().numpy() for m in modalities}
        return self.factors(xs, masks)

    # ------------------------------------------------------------------ interface
    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Factors from each modality alone (same factor space for every modality)."""
        return {m: _tensor(self._factors(batch, [m])) for m in self.modalities}

    def joint_latent(self, batch: Batch) -> Tensor:
        """Factors from every modality the cell has."""
        return _tensor(self._factors(batch, self.modalities))

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """``dst`` from the factors of ``src`` alone, through ``dst``'s loadings."""
        z = self._factors(batch, [src])
        pred = z @ self.loadings[dst].T * self.scale[dst] + self.mean[dst]
        return _tensor(pred)

    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        """The (linear) ``src -> dst`` prediction as an ``nn.Linear`` (``mmint explain``'s hook;
        ``batch_code`` is ignored: the map takes no batch)."""
        w, tau = self.loadings[src], self.precision[src]
        k = w.shape[1]
        proj = np.linalg.solve((w * tau[:, None]).T @ w + np.eye(k), (w * tau[:, None]).T)
        proj = proj / self.scale[src]  # (k, p_src): z = proj (x - mean)
        coef = self.loadings[dst].T * self.scale[dst]  # (k, p_dst)
        weight = proj.T @ coef
        bias = self.mean[dst] - self.mean[src] @ weight
        lin = nn.Linear(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(weight.T.astype(np.float32)))
            lin.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        return lin


def _tensor(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
