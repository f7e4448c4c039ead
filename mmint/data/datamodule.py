"""PairedDataModule: splits, train-only transforms and dict batches for every model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmint import keys
from mmint.data.advice import wide_sparse_continuous
from mmint.data.backed import TransformedRows, is_lazy
from mmint.data.modality import (
    SPARSE_MIN_FEATURES,
    FittedTransform,
    check_dense_width,
    fit_transform,
    pooled_variance,
)
from mmint.data.paired import PairedData
from mmint.data.reduce import (
    FittedReduction,
    check_lsi_values,
    check_reduce,
    fit_reduction,
    input_transforms,
)
from mmint.data.sampling import ShuffledBatches
from mmint.data.spec import DataSpec, train_count_means
from mmint.data.splits import make_split
from mmint.errors import InputError
from mmint.nn.sparse import csr_tensor

Batch = dict[str, torch.Tensor]

#: matrix entries of one chunk of evaluation predictions (float32: 128 MiB)
PREDICTION_ENTRIES = 2**25


def _rows(x: Any, idx: np.ndarray) -> np.ndarray:
    """Dense float32 rows of ``x`` (sparse matrices are densified per batch only, for models
    that read dense batches)."""
    out = x[idx]
    return out.toarray() if sp.issparse(out) else np.asarray(out)


def _file_block(data: PairedData) -> int:
    """Rows per file block of the backed modalities (their read unit)."""
    return max(int(getattr(mod.x, "block_rows", 1)) for mod in data.modalities.values())


def _tensors(state: Any) -> Any:
    """numpy arrays -> tensors, recursively (for checkpoints)."""
    if isinstance(state, dict):
        return {k: _tensors(v) for k, v in state.items()}
    return torch.from_numpy(np.ascontiguousarray(state)) if isinstance(state, np.ndarray) else state


def _check_width(
    modality: str, kind: str, transform: str, n_features: int, n_top: Mapping[str, int]
) -> None:
    """A counts modality normalised per cell (``lognorm``, ``clr``) needs two features: with
    one, every cell's normalised value is the same."""
    width = min(n_features, int(n_top.get(modality) or n_features))
    if kind == "counts" and transform in ("lognorm", "clr") and width < 2:
        where = (
            f"data.n_top_features.{modality}"
            if width < n_features
            else f"modality '{modality}' (transform {transform})"
        )
        raise InputError(
            f"modality '{modality}' has 1 feature: normalising its counts per cell "
            f"({transform}) makes it the same for every cell",
            where,
            f"give it more features, or declare it continuous (data.kinds.{modality}=continuous)",
        )


class _BatchDataset(Dataset):
    """Indexing with an array of cell indices returns a whole dict batch."""

    def __init__(self, dm: PairedDataModule, sparse: bool = False) -> None:
        self.dm, self.sparse = dm, sparse

    def __len__(self) -> int:
        return self.dm.data.n_cells

    def __getitem__(self, idx: Sequence[int] | tuple[int, Sequence[int]]) -> Batch:
        if isinstance(idx, tuple):  # (pass index, cells) from the training sampler
            batch = self.dm.batch(np.asarray(idx[1]), self.sparse)
            batch[keys.PHASE] = torch.tensor(idx[0])
            return batch
        return self.dm.batch(np.asarray(idx), self.sparse)


class PairedDataModule(L.LightningDataModule):
    """Shared data module: one per fit, used by every model.

    Parameters
    ----------
    data
        Checked, aligned modalities (:class:`mmint.data.PairedData`).
    split
        ``{"kind": "random"|"kfold"|"holdout_batch", "fractions": [...], "k", "fold",
        "holdout": [...]}`` (see :func:`mmint.data.splits.make_split`), or
        ``{"kind": "given", "train": idx, "val": idx, "test": idx}`` for an external
        protocol's own cell sets (used to reproduce published protocols as they were).
    seed
        Seed of the split and of batch shuffling.
    batch_size
        Training batch size (validation uses it too, so batch-level losses compare).
    transforms
        ``{modality: transform}`` overriding the kind's default.
    n_top_features
        ``{modality: n}``: keep the n most variable genes / most frequent peaks, chosen on
        training cells.
    reduce
        ``{modality: {"method": "svd"|"lsi", "n_components": K}}``: replace the modality by K
        standardised components fitted on training cells (:mod:`mmint.data.reduce`); the
        models see a K-column ``continuous`` modality.

    Notes
    -----
    What the train loader yields follows the model being trained (read from
    ``trainer.lightning_module``, so a plain ``Trainer.fit(model, datamodule)`` runs the
    model's schedule): ``train_passes_per_epoch`` reshuffled passes per epoch, each batch
    tagged with its pass index (``keys.PHASE``), and, when the model's
    ``uses_unlabelled_target`` is true, the ``holdout_batch`` target cells in the train loader
    (always with label -1), and, when the model's ``accepts_sparse`` is true, the inputs of
    sparse modalities as sparse CSR tensors (no per-batch densifying; the model's first
    layers read them sparse). The attributes ``passes_per_epoch``, ``include_target_in_train``
    and ``sparse_batches`` override the model's declaration when set (not ``None``);
    ``sparse_min_features`` (default 2,048) is the narrowest modality given sparse.
    Labels of ``holdout_batch`` target cells are never put in a batch.
    """

    def __init__(
        self,
        data: PairedData,
        split: Mapping[str, Any] | None = None,
        seed: int = 0,
        batch_size: int = 128,
        transforms: Mapping[str, str] | None = None,
        n_top_features: Mapping[str, int] | None = None,
        eval_batch_size: int = 1024,
        shuffle_block: int | None = None,
        reduce: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.data = data
        self.split_config = dict(split or {"kind": "random"})
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.n_top_features = dict(n_top_features or {})
        widths = {
            m: min(mod.n_features, int(self.n_top_features.get(m) or mod.n_features))
            for m, mod in data.modalities.items()
        }
        kinds = {m: mod.kind for m, mod in data.modalities.items()}
        #: ``{modality: (method, n_components)}`` of ``data.reduce``, and each input transform
        self.reduce = check_reduce(reduce, widths, transforms or {})
        self.transform_names = input_transforms(kinds, self.reduce, transforms or {})
        #: fitted ``data.reduce`` reductions (at :meth:`setup`, or from a checkpoint)
        self.reductions: dict[str, FittedReduction] = {}
        for m, mod in data.modalities.items():  # a reduced modality needs no advice
            line = m not in self.reduce and wide_sparse_continuous(m, mod.kind, mod.x, mod.present)
            if line and line not in data.warnings:
                data.warnings.append(line)
        for m, mod in data.modalities.items():
            _check_width(m, mod.kind, self.transform_names[m], mod.n_features, self.n_top_features)
            sparse = sp.issparse(mod.x) or bool(getattr(mod.x, "sparse", False))
            check_dense_width(m, mod.x.shape[0], sparse, self.transform_names[m], widths[m])
        lazy = any(is_lazy(mod.x) for mod in data.modalities.values())
        #: cells per shuffled block of the train loader (1: every cell shuffled; default 1
        #: in memory, the file block of backed reading otherwise)
        self.shuffle_block = int(shuffle_block or (_file_block(data) if lazy else 1))
        #: passes per epoch of the train loader (``None``: the model's declaration, else 1)
        self.passes_per_epoch: int | None = None
        #: add the unlabelled target cells to the train loader (``None``: the model's)
        self.include_target_in_train: bool | None = None
        #: sparse modalities' inputs as sparse tensors (``None``: the model's ``accepts_sparse``)
        self.sparse_batches: bool | None = None
        #: the narrowest sparse modality given as a sparse batch
        self.sparse_min_features = SPARSE_MIN_FEATURES
        self._ready = False

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Split, fit transforms on training cells, transform every cell. Idempotent."""
        if self._ready:
            return
        labels, self.label_names = self.data.labels()
        self.batch_codes, self.batch_names = self.data.batches()
        cfg = self.split_config
        if cfg.get("kind") == "given":
            # an external protocol's own sets (e.g. a reproduced paper protocol); may overlap
            self.split = {s: np.asarray(cfg[s], dtype=np.int64) for s in ("train", "val", "test")}
        else:
            self.split = make_split(
                labels,
                self.batch_codes,
                self.batch_names,
                kind=cfg.get("kind", "random"),
                seed=self.seed,
                fractions=cfg.get("fractions", (0.8, 0.1, 0.1)),
                k=cfg.get("k", 10),
                fold=cfg.get("fold", 0),
                holdout=cfg.get("holdout", ()) or (),
            )
        self.true_labels = labels
        self.batch_labels = labels.copy()
        if cfg.get("kind") == "holdout_batch":
            self.batch_labels[self.split["test"]] = keys.UNKNOWN_LABEL
        if not getattr(self, "transforms", None):
            self.transforms = {}
            train = self.split["train"]
            for m, mod in self.data.modalities.items():
                if self.reduce.get(m, ("",))[0] == "lsi":
                    check_lsi_values(m, mod.x)
                cells = train[mod.present[train]]
                self.transforms[m] = fit_transform(
                    mod.x, mod.kind, self.transform_names[m], self.n_top_features.get(m), cells
                )
        # in memory: transformed once (a sparse input stays CSR and shares the raw indices);
        # backed: transformed per batch as rows are read; a reduced modality: its components
        self.inputs: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}
        self.masks: dict[str, np.ndarray] = {}
        for m, mod in self.data.modalities.items():
            t = self.transforms[m]
            if is_lazy(mod.x):
                self.inputs[m] = TransformedRows(mod.x, t)
                if mod.kind == "counts":
                    self.counts[m] = TransformedRows(mod.x, t, select_only=True)
            else:
                raw = t.select(mod.x)
                self.inputs[m] = t.apply(raw)
                if mod.kind == "counts":
                    sparse = sp.issparse(raw)
                    self.counts[m] = sp.csr_matrix(raw, dtype=np.float32) if sparse else raw
            self.masks[m] = mod.present.astype(np.float32)
        self._reduce_inputs()
        self._ready = True

    def _reduce_inputs(self) -> None:
        """Fit ``data.reduce``'s reductions on training cells (unless restored from a
        checkpoint) and replace those modalities' inputs by their components (no raw counts:
        they are ``continuous`` for the models)."""
        if not self.reductions:
            train = self.split["train"]
            self.reductions = {
                m: fit_reduction(self.inputs[m], train[self.masks[m][train] > 0], method, k)
                for m, (method, k) in self.reduce.items()
            }
        for m, red in self.reductions.items():
            self.inputs[m] = red.apply(self.inputs[m])
            self.counts.pop(m, None)

    def input_kind(self, modality: str) -> str:
        """The kind the models see (``continuous`` for a reduced modality)."""
        return "continuous" if modality in self.reduce else self.data.modalities[modality].kind

    def input_features(self, modality: str) -> list[str]:
        """Names of the model-input features (the components' for a reduced modality)."""
        if modality in self.reduce:
            return self.reductions[modality].feature_names(modality)
        mod = self.data.modalities[modality]
        return [str(v) for v in mod.var_names[self.transforms[modality].features]]

    def reduction_record(self) -> dict[str, Any]:
        """``metrics.json``'s ``reduction``: ``{modality: method, n_components, explained
        variance ratio sum, training cells}`` (empty without ``data.reduce``)."""
        return {m: red.record() for m, red in self.reductions.items()}

    @property
    def modalities(self) -> list[str]:
        """Modality names."""
        return list(self.data.modalities)

    @property
    def spec(self) -> DataSpec:
        """What models are sized from (call after :meth:`setup`)."""
        train = self.split["train"]
        counts = np.bincount(
            self.batch_labels[train][self.batch_labels[train] >= 0], minlength=len(self.label_names)
        )
        variance = {
            m: pooled_variance(self.inputs[m], train[self.masks[m][train] > 0])
            for m in self.modalities
        }
        return DataSpec(
            modalities=self.modalities,
            kinds={m: self.input_kind(m) for m in self.modalities},
            n_features={m: int(self.inputs[m].shape[1]) for m in self.modalities},
            transforms={
                m: "standardize" if m in self.reduce else t for m, t in self.transform_names.items()
            },
            n_batches=len(self.batch_names),
            label_names=list(self.label_names),
            train_label_counts=[int(c) for c in counts],
            train_batch_counts=[
                int(c)
                for c in np.bincount(self.batch_codes[train], minlength=len(self.batch_names))
            ],
            input_variance=variance,
            n_train=len(train),
            n_cells=int(self.data.n_cells),
            count_means=train_count_means(self.counts, self.masks, train),
            feature_names={m: self.input_features(m) for m in self.modalities},
        )

    # ------------------------------------------------------------------ batches
    def batch(self, idx: np.ndarray, sparse: bool = False) -> Batch:
        """The dict batch of the cells ``idx`` (keys in :mod:`mmint.keys`).

        ``sparse``: the model inputs of modalities held sparse with at least
        ``sparse_min_features`` features come as torch CSR tensors (raw counts stay dense:
        likelihoods read every entry).
        """
        idx = np.asarray(idx, dtype=np.int64)
        out: Batch = {
            keys.INDEX: torch.from_numpy(idx),
            keys.BATCH: torch.from_numpy(self.batch_codes[idx]),
            keys.LABEL: torch.from_numpy(self.batch_labels[idx]),
        }
        for m in self.modalities:
            x = self.inputs[m]
            if sparse and sp.issparse(x) and x.shape[1] >= self.sparse_min_features:
                out[m] = csr_tensor(x[idx])
            else:
                out[m] = torch.from_numpy(_rows(x, idx))
            out[keys.mask_key(m)] = torch.from_numpy(self.masks[m][idx])
            if m in self.counts:
                out[keys.counts_key(m)] = torch.from_numpy(_rows(self.counts[m], idx))
        return out

    def iter_batches(
        self, idx: np.ndarray, batch_size: int | None = None, sparse: bool = False
    ) -> Iterator[Batch]:
        """Batches over ``idx`` in order (for evaluation); ``sparse`` as in :meth:`batch`."""
        size = batch_size or self.eval_batch_size
        for i in range(0, len(idx), size):
            yield self.batch(idx[i : i + size], sparse)

    def prediction_rows(self, targets: list[str]) -> int:
        """Cells per evaluation batch: ``eval_batch_size``, fewer when a predicted target is
        so wide that a batch of predictions would exceed :data:`PREDICTION_ENTRIES` entries
        (100,000 peaks: 335 cells)."""
        widest = max((self.inputs[d].shape[1] for d in targets), default=1)
        return max(1, min(self.eval_batch_size, PREDICTION_ENTRIES // max(1, widest)))

    def cells(self, name: str) -> np.ndarray:
        """Indices of ``train``, ``val``, ``test`` or ``all`` cells."""
        return np.arange(self.data.n_cells) if name == "all" else self.split[name]

    def _loader(self, sampler: Sampler | Sequence[list[int]]) -> DataLoader:
        sparse = bool(self._declared("sparse_batches", "accepts_sparse", False))
        return DataLoader(_BatchDataset(self, sparse), sampler=sampler, batch_size=None)

    @property
    def backed(self) -> bool:
        """Whether some modality is read from its file on demand (``data.backed``)."""
        return any(is_lazy(x) for x in self.inputs.values())

    def _declared(self, attribute: str, model_attribute: str, default: Any) -> Any:
        """This module's setting, else the trained model's declaration, else ``default``."""
        if getattr(self, attribute) is not None:
            return getattr(self, attribute)
        trainer = getattr(self, "trainer", None)
        model = getattr(trainer, "lightning_module", None) if trainer is not None else None
        return getattr(model, model_attribute, default)

    def train_cells(self) -> np.ndarray:
        """Cells the train loader walks (train, plus the unlabelled target when asked)."""
        train = self.split["train"]
        target = self._declared("include_target_in_train", "uses_unlabelled_target", False)
        if target and self.split_config.get("kind") == "holdout_batch":
            train = np.sort(np.concatenate([train, self.split["test"]]))
        return train

    def train_dataloader(self) -> DataLoader:
        """Shuffled dict batches of training cells (``train_passes_per_epoch`` passes, each
        batch tagged with its pass index; under DDP this process's share)."""
        passes = int(self._declared("passes_per_epoch", "train_passes_per_epoch", 1))
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        cells, block = self.train_cells(), self.shuffle_block
        return self._loader(
            ShuffledBatches(cells, self.batch_size, self.seed, passes, rank, world, block)
        )

    def _ordered(self, idx: np.ndarray, size: int) -> DataLoader:
        return self._loader([idx[i : i + size].tolist() for i in range(0, len(idx), size)])

    def val_dataloader(self) -> DataLoader:
        """Validation cells in order, training batch size."""
        return self._ordered(self.split["val"], self.batch_size)

    def test_dataloader(self) -> DataLoader:
        """Test cells in order."""
        return self._ordered(self.split["test"], self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """All cells in order."""
        return self._ordered(np.arange(self.data.n_cells), self.eval_batch_size)

    # ------------------------------------------------------------------ persistence
    def split_names(self) -> dict[str, Any]:
        """The split as cell names (what ``split.json`` holds)."""
        names = self.data.names
        out: dict[str, Any] = {"kind": self.split_config.get("kind", "random"), "seed": self.seed}
        out.update({s: [str(c) for c in names[idx]] for s, idx in self.split.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        """Fitted transforms and split (Lightning stores this in every checkpoint)."""
        # tensors and plain types only, so checkpoints load with torch's weights_only=True
        state = {
            "transforms": {m: _tensors(t.state()) for m, t in self.transforms.items()},
            "split": {s: torch.from_numpy(np.asarray(idx)) for s, idx in self.split.items()},
            "seed": self.seed,
        }
        if self.reductions:  # only with data.reduce: older states unchanged
            state["reductions"] = {m: _tensors(r.state()) for m, r in self.reductions.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Reuse fitted transforms from a checkpoint (call before :meth:`setup`)."""
        self.transforms = {m: FittedTransform.from_state(s) for m, s in state["transforms"].items()}
        self.reductions = {
            m: FittedReduction.from_state(s) for m, s in (state.get("reductions") or {}).items()
        }
