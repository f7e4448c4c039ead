"""Weighted nearest neighbours (Hao et al. 2021, Seurat v4).

Per modality a reduced space fitted on training cells: PCA of the scaled model input (RNA,
ADT, continuous modalities), LSI of TF-IDF peaks with the first component dropped (ATAC), each
cell L2-normalised (as Seurat's ``FindMultiModalNeighbors``). For a set of cells,
:func:`mmint.models.wnn_graph.wnn_graph` (muon's steps with exact neighbours; or
:func:`muon.pp.neighbors` itself) builds the WNN graph and the per-cell modality weights; Leiden on that
graph gives the groups (resolution chosen on the validation cells by ARI), and a spectral
embedding of the graph is the joint latent that latent-based metrics read. Cross-modal
prediction is a kNN regression floor: the mean of the target over the ``n_neighbors`` nearest
training cells in the source modality's own space (the joint WNN graph would use the target
modality of the cell being predicted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA, TruncatedSVD

from mmint.data.modality import FittedTransform, fit_transform
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.metrics.clustering import DEFAULT_RESOLUTIONS, ari, leiden_labels
from mmint.models.arrays import dense64
from mmint.models.optional import package_versions, require
from mmint.models.persist import SavedByAttributes
from mmint.models.wholeset import Embedding, WholeSetIntegrator
from mmint.models.wnn_graph import WNNGraph, muon_wnn_graph, wnn_graph

#: metrics.json keys that do not apply to WNN, with the reason
NOT_APPLICABLE = {
    "foscttm": "WNN keeps one PCA/LSI space per modality; the spaces are not aligned",
    "latent_distance": "WNN keeps one PCA/LSI space per modality; the spaces are not aligned",
    "foscttm_pairs": "WNN keeps one PCA/LSI space per modality; the spaces are not aligned",
    "latent_distance_pairs": "WNN keeps one PCA/LSI space per modality; the spaces are not aligned",
    "ari_class": "Leiden groups of separately built graphs (train vs scored cells) do not "
    "correspond",
    "transfer_accuracy": "WNN builds its graph per scored set; it is not a label-transfer method",
    "transfer_macro_f1": "WNN builds its graph per scored set; it is not a label-transfer method",
}


@dataclass
class Reducer:
    """A modality's reduced space, fitted on training cells.

    ``tfidf`` (binary modalities) or ``mean``/``std`` scaling (others), then ``svd`` (a fitted
    PCA or TruncatedSVD) whose first ``drop`` components are left out, then ``comp_std``
    scaling of the components (LSI) and L2 normalisation of each cell.
    """

    svd: Any
    tfidf: FittedTransform | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    drop: int = 0
    comp_std: np.ndarray | None = None

    @classmethod
    def fit(cls, x: Any, kind: str, n_components: int, seed: int) -> Reducer:
        """Fit on the training cells' model input ``x``."""
        n = max(1, min(n_components, x.shape[1] - 1, x.shape[0] - 2))
        if kind == "binary":
            tfidf = fit_transform(x, "binary", "tfidf")
            svd = TruncatedSVD(n_components=n + 1, random_state=seed).fit(tfidf.apply(x))
            red = cls(svd=svd, tfidf=tfidf, drop=1)
            red.comp_std = np.maximum(red._components(x).std(axis=0), 1e-12)
            return red
        dense = dense64(x)
        mean, std = dense.mean(axis=0), dense.std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)
        red = cls(svd=None, mean=mean, std=std)
        red.svd = PCA(n_components=n, random_state=seed).fit(red._scaled(dense))
        return red

    def _scaled(self, dense: np.ndarray) -> np.ndarray:
        # Seurat's ScaleData: unit variance, clipped at 10
        return np.clip((dense - self.mean) / self.std, -10.0, 10.0)

    def _components(self, x: Any) -> np.ndarray:
        if self.tfidf is not None:
            z = self.svd.transform(self.tfidf.apply(x))[:, self.drop :]
            return z if self.comp_std is None else z / self.comp_std
        return self.svd.transform(self._scaled(dense64(x)))

    def transform(self, x: Any) -> np.ndarray:
        """Reduced, L2-normalised coordinates of the cells of ``x``."""
        z = self._components(x)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


class WNN(SavedByAttributes, WholeSetIntegrator):
    """Weighted nearest neighbours over per-modality PCA / LSI.

    Parameters
    ----------
    spec
        Data description.
    n_components
        PCA / LSI components per modality (capped by features and training cells; LSI drops
        its first component on top).
    n_neighbors
        Neighbours of the per-modality and WNN graphs, and of the kNN prediction.
    n_bandwidth_neighbors, n_multineighbors
        muon's kernel-bandwidth neighbours and candidate neighbours per modality (capped by
        the number of cells).
    n_latent
        Dimensions of the spectral embedding of the WNN graph (the joint latent).
    resolutions
        Leiden resolutions tried on the validation cells (best ARI with their labels); without
        labels the resolution is 1.0.
    implementation
        ``mmint`` (:func:`mmint.models.wnn_graph.wnn_graph`, exact neighbours; default) or
        ``muon`` (:func:`muon.pp.neighbors`, NN-descent; about 20 s of numba compilation per
        graph).
    seed
        Seed of the decompositions, the neighbour search, Leiden and the spectral embedding.
    """

    name = "wnn"
    not_applicable = NOT_APPLICABLE
    fitted_attributes = ("reducers", "resolution", "model_info")

    def __init__(
        self,
        spec: DataSpec | dict,
        n_components: int = 30,
        n_neighbors: int = 20,
        n_bandwidth_neighbors: int = 20,
        n_multineighbors: int = 200,
        n_latent: int = 20,
        resolutions: list[float] | None = None,
        implementation: str = "mmint",
        seed: int = 0,
    ) -> None:
        if implementation not in ("mmint", "muon"):
            raise InputError(
                f"unknown WNN implementation '{implementation}'",
                "model.implementation",
                "use mmint (exact neighbours) or muon (muon.pp.neighbors)",
            )
        self.spec = DataSpec.from_any(spec)
        self.hparams = {
            "n_components": n_components,
            "n_neighbors": n_neighbors,
            "n_bandwidth_neighbors": n_bandwidth_neighbors,
            "n_multineighbors": n_multineighbors,
            "n_latent": n_latent,
            "resolutions": list(resolutions or DEFAULT_RESOLUTIONS),
            "implementation": implementation,
            "seed": seed,
        }
        self.reducers: dict[str, Reducer] = {}
        self.resolution = 1.0
        self.model_info: dict[str, Any] = {}
        self._train_space: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ fitting
    def fit_data(self, dm: Any) -> Self:
        """Fit each modality's space on the training cells; choose the Leiden resolution on
        the validation cells (best ARI with their labels)."""
        if self.hparams["implementation"] == "muon":
            require("muon", self.name)
        train = dm.cells("train")
        seed = self.hparams["seed"]
        for m in self.modalities:
            cells = train[dm.masks[m][train] > 0]
            kind = self.spec.kinds[m]
            self.reducers[m] = Reducer.fit(
                dm.inputs[m][cells], kind, self.hparams["n_components"], seed
            )
        val = dm.cells("val")
        labels = dm.batch_labels[val]
        chosen_by = "default 1.0 (no labelled validation cells)"
        if (labels >= 0).sum() >= 10 and len(np.unique(labels[labels >= 0])) >= 2:
            conn = self.graph(dm, val).connectivities
            lab = labels >= 0
            scores = {
                r: ari(labels[lab], leiden_labels(conn, r, seed)[lab])
                for r in self.hparams["resolutions"]
            }
            self.resolution = float(max(scores, key=lambda r: (scores[r], -r)))
            chosen_by = (
                f"best ARI on {int(lab.sum())} validation cells ({scores[self.resolution]:.3f})"
            )
        self.model_info = {
            "implementation": f"{self.hparams['implementation']}: "
            + (
                "muon.pp.neighbors"
                if self.hparams["implementation"] == "muon"
                else "mmint.models.wnn_graph (muon 0.1.9's steps, exact neighbours)"
            )
            + " over per-modality PCA (scaled input) / LSI (TF-IDF, first component dropped), "
            "cells L2-normalised (Hao et al. 2021 WNN)",
            "leiden_resolution": self.resolution,
            "leiden_resolution_chosen_by": chosen_by,
            "joint_latent": "spectral embedding of the WNN graph of the scored cells",
            "translation": "mean of the target over the k nearest training cells in the "
            "source modality's own PCA/LSI space (kNN regression floor)",
            "versions": package_versions("scanpy", "umap-learn", "muon"),
        }
        return self

    # ------------------------------------------------------------------ graph
    def space(self, dm: Any, m: str, cells: np.ndarray) -> np.ndarray:
        """Modality ``m``'s reduced, L2-normalised coordinates of ``cells``."""
        return self.reducers[m].transform(dm.inputs[m][cells])

    def graph(self, dm: Any, cells: np.ndarray) -> WNNGraph:
        """The WNN graph of ``cells`` (every one must have every modality)."""
        lacking = sum(int((dm.masks[m][cells] == 0).sum()) for m in self.modalities)
        if lacking:
            raise InputError(
                f"{lacking} cell-modality entries of the scored cells are missing",
                f"model={self.name}",
                "WNN needs every modality of every cell: use data.join=inner",
            )
        spaces = {m: self.space(dm, m, cells) for m in self.modalities}
        options = {
            k: self.hparams[k] for k in ("n_neighbors", "n_bandwidth_neighbors", "n_multineighbors")
        }
        if self.hparams["implementation"] == "muon":
            return muon_wnn_graph(spaces, seed=self.hparams["seed"], **options)
        return wnn_graph(spaces, seed=self.hparams["seed"], **options)

    def embed(self, dm: Any, cells: np.ndarray) -> Embedding:
        """Spectral embedding and Leiden groups of the WNN graph of ``cells``; per-modality
        PCA/LSI coordinates (zeros where a cell lacks the modality); mean modality weights."""
        from sklearn.manifold import spectral_embedding

        graph = self.graph(dm, cells)
        conn, n = graph.connectivities, len(cells)
        sym = ((conn + conn.T) / 2).tocsr()
        joint = spectral_embedding(
            sym,
            n_components=max(1, min(self.hparams["n_latent"], n - 2)),
            drop_first=True,
            random_state=self.hparams["seed"],
        )
        groups = leiden_labels(conn, self.resolution, self.hparams["seed"])
        latents = {m: self.space(dm, m, cells) for m in self.modalities}
        weights = graph.weights
        extra = {
            "wnn_modality_weights": {m: float(np.mean(w)) for m, w in weights.items()},
            "wnn_modality_weights_sd": {m: float(np.std(w)) for m, w in weights.items()},
            "wnn_leiden_resolution": self.resolution,
        }
        return Embedding(joint, latents, groups.astype(np.int64), extra)

    # ------------------------------------------------------------------ kNN regression
    def _train_coords(self, dm: Any, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
        if (src, dst) not in self._train_space:
            train = dm.cells("train")
            train = train[(dm.masks[src][train] > 0) & (dm.masks[dst][train] > 0)]
            self._train_space[(src, dst)] = (train, self.space(dm, src, train))
        return self._train_space[(src, dst)]

    def neighbours(self, dm: Any, src: str, dst: str, cells: np.ndarray) -> np.ndarray:
        """Indices (into the data) of each cell's ``n_neighbors`` nearest training cells in
        ``src``'s space, among training cells that have ``src`` and ``dst``."""
        from sklearn.neighbors import NearestNeighbors

        train, z_train = self._train_coords(dm, src, dst)
        k = min(self.hparams["n_neighbors"], len(train))
        nn = NearestNeighbors(n_neighbors=k).fit(z_train)
        _, idx = nn.kneighbors(self.space(dm, src, cells))
        return train[idx]

    def predict_cells(self, dm: Any, src: str, dst: str, cells: np.ndarray) -> np.ndarray:
        """Mean of ``dst``'s model input over each cell's nearest training cells in ``src``."""
        nbrs = self.neighbours(dm, src, dst, cells)
        n, k = nbrs.shape
        avg = sp.csr_matrix(
            (np.full(n * k, 1.0 / k), nbrs.ravel(), np.arange(0, n * k + 1, k)),
            shape=(n, dm.data.n_cells),
        )
        pred = avg @ dm.inputs[dst]
        return np.asarray(pred.toarray() if sp.issparse(pred) else pred, dtype=np.float32)
