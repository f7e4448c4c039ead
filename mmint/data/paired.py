"""PairedData: modalities of the same cells, aligned and checked, with one clear error per problem."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from mmint.data.checks import (
    check_annotations_agree,
    check_kinds,
    check_not_empty,
    check_unique_cells,
    check_unique_features,
    examples,
)
from mmint.data.join import join_names, merge_obs
from mmint.errors import InputError

JOINS = ("strict", "inner", "outer")


@dataclass
class Modality:
    """One modality's raw values on the cells of the :class:`PairedData`.

    ``x`` has one row per cell of the paired data; rows of cells that lack the modality are
    zero and ``present`` is ``False`` for them.
    """

    name: str
    kind: str
    x: np.ndarray | sp.csr_matrix
    var_names: pd.Index
    present: np.ndarray
    where: str = ""

    @property
    def n_features(self) -> int:
        """Number of raw features."""
        return self.x.shape[1]


@dataclass
class PairedData:
    """Aligned modalities of the same cells plus cell annotations.

    Build it with :meth:`from_anndatas` or :meth:`from_mudata`; every check runs there.
    """

    modalities: dict[str, Modality]
    obs: pd.DataFrame
    label_key: str | None = None
    batch_key: str | None = None
    class_key: str | None = None
    exclude_labels: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    #: handled problems of the input the user should know about (shown by validate and fit)
    warnings: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_anndatas(
        cls,
        adatas: Mapping[str, ad.AnnData | str | Path],
        kinds: Mapping[str, str],
        join: str = "strict",
        label_key: str | None = None,
        batch_key: str | None = None,
        class_key: str | None = None,
        exclude_labels: Sequence[str] = (),
        backed: bool = False,
    ) -> PairedData:
        """Align one AnnData (or ``.h5ad`` path) per modality and check everything.

        Parameters
        ----------
        adatas
            ``{modality: AnnData or path}``.
        kinds
            ``{modality: "counts" | "binary" | "continuous"}``.
        join
            ``strict`` (identical cells required), ``inner`` (shared cells) or ``outer``
            (union; a cell absent from a modality's file lacks that modality).
        label_key, batch_key, class_key
            ``obs`` columns with cell labels, batches and coarse classes of the labels.
        exclude_labels
            Labels treated as unknown (their cells still train, unlabelled).
        backed
            Leave the matrices of ``.h5ad`` paths in their files and read rows on demand
            (:class:`mmint.data.backed.BackedMatrix`); the checks read the files in blocks.
        """
        check_kinds(list(adatas), kinds)
        if join not in JOINS:
            raise InputError(f"unknown join '{join}'", "data.join", f"use one of {list(JOINS)}")
        loaded = {m: _read(m, a, backed) for m, a in adatas.items()}
        for m, (adata, where) in loaded.items():
            check_not_empty(m, adata, where)
            check_unique_cells(m, adata.obs_names, where)
            check_unique_features(m, adata.var_names, where)
        check_annotations_agree(
            {m: a.obs for m, (a, _) in loaded.items()},
            {"label": label_key, "batch": batch_key, "class": class_key},
            {m: w for m, (_, w) in loaded.items()},
        )
        names, notes = join_names({m: a.obs_names for m, (a, _) in loaded.items()}, join, loaded)
        obs = merge_obs({m: a.obs for m, (a, _) in loaded.items()}, names)
        modalities = {}
        for m, (adata, where) in loaded.items():
            modalities[m] = _aligned_modality(m, kinds[m], adata, names, where)
        data = cls(
            modalities,
            obs,
            label_key,
            batch_key,
            class_key,
            tuple(exclude_labels or ()),
            notes,
        )
        data._check_values()
        data._mark_empty_cells()
        data._check_paired()
        data._check_columns({m: w for m, (_, w) in loaded.items()})
        return data

    @classmethod
    def from_mudata(cls, mdata: Any, kinds: Mapping[str, str], **kwargs: Any) -> PairedData:
        """Build from a MuData (or ``.h5mu`` path); a cell absent from a modality lacks it.

        ``obs`` columns are looked up in the MuData's global ``obs`` and in each modality.
        """
        import mudata as md

        where = "MuData"
        if isinstance(mdata, str | Path):
            path = Path(mdata)
            if not path.exists():
                raise InputError("file not found", str(path), "check data.paths")
            where = str(path)
            md.set_options(pull_on_update=False)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)
                warnings.filterwarnings("ignore", message=".*names are not unique.*")
                mdata = md.read_h5mu(path)
        adatas = {}
        for m in mdata.mod:
            a = mdata.mod[m]
            extra = mdata.obs.loc[a.obs_names, [c for c in mdata.obs.columns if "\x00" not in c]]
            prefix = f"{m}:"
            extra = extra.rename(
                columns={c: c[len(prefix) :] for c in extra.columns if c.startswith(prefix)}
            )
            extra = extra.loc[:, ~extra.columns.duplicated()]
            a = a.copy()
            for col in extra.columns:
                if col not in a.obs.columns:
                    a.obs[col] = extra[col].to_numpy()
            a.uns["mmint_where"] = where
            adatas[m] = a
        kwargs.setdefault("join", "outer")
        return cls.from_anndatas(adatas, kinds, **kwargs)

    # ------------------------------------------------------------------ annotations
    @property
    def names(self) -> pd.Index:
        """Cell names."""
        return self.obs.index

    @property
    def n_cells(self) -> int:
        """Number of cells (union over modalities)."""
        return len(self.obs)

    def _categories(self, key: str | None) -> tuple[np.ndarray, list[str]]:
        if key is None:
            return np.zeros(self.n_cells, dtype=np.int64), []
        col = self.obs[key]
        valid = col.notna().to_numpy()
        values = col.astype(str).to_numpy()
        cats = sorted(set(values[valid]))
        lookup = {c: i for i, c in enumerate(cats)}
        codes = np.array([lookup[v] if ok else -1 for v, ok in zip(values, valid, strict=True)])
        return codes.astype(np.int64), cats

    def labels(self) -> tuple[np.ndarray, list[str]]:
        """Label codes (-1 for unknown or excluded labels) and the label names."""
        if self.label_key is None:
            return np.full(self.n_cells, -1, dtype=np.int64), []
        col = self.obs[self.label_key]
        excluded = col.astype(str).isin(set(self.exclude_labels)).to_numpy()
        masked = col.where(~excluded)
        codes, names = PairedData(
            {}, pd.DataFrame({"l": masked.to_numpy()}, index=self.obs.index), "l"
        )._categories("l")
        return codes, names

    def label_counts(self) -> dict[str, int]:
        """``n_labels`` (categories used), ``n_unknown`` (cells whose label is missing, NaN)
        and ``n_excluded`` (cells whose label is in ``exclude_labels``)."""
        if self.label_key is None:
            return {"n_labels": 0, "n_unknown": self.n_cells, "n_excluded": 0}
        col = self.obs[self.label_key]
        missing = col.isna().to_numpy()
        excluded = ~missing & col.astype(str).isin(set(self.exclude_labels)).to_numpy()
        return {
            "n_labels": len(self.labels()[1]),
            "n_unknown": int(missing.sum()),
            "n_excluded": int(excluded.sum()),
        }

    def batches(self) -> tuple[np.ndarray, list[str]]:
        """Batch codes and names (one batch ``"all"`` when there is no batch column)."""
        if self.batch_key is None:
            return np.zeros(self.n_cells, dtype=np.int64), ["all"]
        codes, names = self._categories(self.batch_key)
        return np.where(codes < 0, 0, codes), names or ["all"]

    def classes(self) -> dict[str, str] | None:
        """``{fine label: class}`` from ``class_key`` (``None`` without one)."""
        if self.class_key is None or self.label_key is None:
            return None
        pairs = self.obs[[self.label_key, self.class_key]].dropna().astype(str)
        return dict(pairs.drop_duplicates(self.label_key).itertuples(index=False, name=None))

    # ------------------------------------------------------------------ reporting
    def summary(self) -> str:
        """Human-readable summary: cells, modalities, kinds, features, labels, batches, sparsity."""
        lines = [f"cells: {self.n_cells}"]
        for m, mod in self.modalities.items():
            n_present = int(mod.present.sum())
            nnz = sum(
                b.nnz if sp.issparse(b) else int(np.count_nonzero(b)) for _, b in _blocks(mod.x)
            )
            density = nnz / max(1, n_present * mod.n_features)
            lines.append(
                f"modality {m}: kind={mod.kind} features={mod.n_features} cells={n_present} "
                f"missing={self.n_cells - n_present} sparsity={1 - density:.3f}"
            )
        if self.label_key:
            c = self.label_counts()
            lines.append(
                f"labels ({self.label_key}): {c['n_labels']} categories, "
                f"{c['n_unknown']} cells without a label (unknown), {c['n_excluded']} excluded"
            )
        else:
            lines.append("labels: none")
        _, bnames = self.batches()
        lines.append(f"batches ({self.batch_key or '-'}): {len(bnames)}")
        if self.class_key:
            lines.append(f"classes ({self.class_key}): {len(set((self.classes() or {}).values()))}")
        lines.extend(self.notes)
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    # ------------------------------------------------------------------ checks
    def _check_values(self) -> None:
        for m, mod in self.modalities.items():
            # scanned in row blocks: no temporary as large as the matrix (10^6 cells)
            bad_cells, neg, frac = [], [], []
            for r0, block in _blocks(mod.x):
                values = block.data if sp.issparse(block) else block
                bad_cells.append(r0 + _rows_where(block, ~np.isfinite(values)))
                if mod.kind == "counts":
                    neg.append(r0 + _rows_where(block, values < 0))
                    with np.errstate(invalid="ignore"):  # inf: reported above as not finite
                        step = np.abs(values - np.round(values)) > 1e-6
                    frac.append(r0 + _rows_where(block, step))
            bad_cells = np.concatenate(bad_cells)
            if len(bad_cells):
                raise InputError(
                    f"{len(bad_cells)} cells have NaN or inf values, e.g. "
                    f"{examples(self.names[bad_cells])}",
                    f"modality '{m}', {mod.where}",
                    "remove or impute these values before loading",
                )
            if mod.kind == "counts":
                neg = np.concatenate(neg)
                if len(neg):
                    raise InputError(
                        f"{len(neg)} cells have negative values in a 'counts' modality, e.g. "
                        f"{examples(self.names[neg])}",
                        f"modality '{m}', {mod.where}",
                        "give raw counts, or declare the modality kind 'continuous'",
                    )
                frac = np.concatenate(frac)
                if len(frac):
                    raise InputError(
                        f"{len(frac)} cells have non-integer values in a 'counts' modality, e.g. "
                        f"{examples(self.names[frac])}",
                        f"modality '{m}', {mod.where}",
                        "give raw integer counts (e.g. layers['counts']), or declare the kind "
                        "'continuous'",
                    )

    def _mark_empty_cells(self) -> None:
        """A cell whose row is all zero in a ``counts`` or ``binary`` modality was not measured
        there (no UMI, no open peak): it is marked as lacking that modality (mask 0), with a
        warning, rather than given a library size of 0. A cell left with no modality at all
        is an error."""
        for m, mod in self.modalities.items():
            if mod.kind == "continuous":
                continue
            nonzero = np.concatenate([_nonzero_rows(b) for _, b in _blocks(mod.x)])
            empty = np.flatnonzero(mod.present & ~nonzero)
            if len(empty):
                mod.present = mod.present & nonzero
                what = "no counts" if mod.kind == "counts" else "no nonzero value"
                self.warnings.append(
                    f"{len(empty)} cells have {what} in '{m}' (e.g. "
                    f"{examples(self.names[empty])}): treated as lacking '{m}' (mask 0); "
                    "filter them out to drop them"
                )
        present = np.stack([mod.present for mod in self.modalities.values()]).any(axis=0)
        if not present.all():
            bad = np.flatnonzero(~present)
            raise InputError(
                f"{len(bad)} cells have no values in any modality, e.g. "
                f"{examples(self.names[bad])}",
                ", ".join(f"'{m}' {mod.where}" for m, mod in self.modalities.items()),
                "remove these cells (e.g. filter cells with total counts 0)",
            )

    def _check_paired(self) -> None:
        """With two or more modalities some cells must have at least two of them: paired data
        is what every integrator and every cross-modal metric needs."""
        if len(self.modalities) < 2:
            return
        n_measured = np.stack([mod.present for mod in self.modalities.values()]).sum(axis=0)
        if (n_measured >= 2).any():
            return
        counts = ", ".join(f"'{m}': {int(mod.present.sum())}" for m, mod in self.modalities.items())
        raise InputError(
            f"the modalities share no cells (cells per modality: {counts}; none has two)",
            ", ".join(dict.fromkeys(mod.where for mod in self.modalities.values())),
            "the same cell must have the same name (obs_names) in every modality; check the "
            "names, or pair the cells before loading",
        )

    def _check_columns(self, wheres: Mapping[str, str]) -> None:
        files = ", ".join(wheres.values())
        for role, key in (
            ("label", self.label_key),
            ("batch", self.batch_key),
            ("class", self.class_key),
        ):
            if key is not None and key not in self.obs.columns:
                raise InputError(
                    f"{role} column '{key}' is missing",
                    f"obs of {files}; columns there: {list(self.obs.columns)[:10]}",
                    f"add obs['{key}'] or set data.{role}_key to an existing column (or null)",
                )


# ---------------------------------------------------------------------- helpers
def _read(
    modality: str, source: ad.AnnData | str | Path, backed: bool = False
) -> tuple[ad.AnnData, str]:
    if isinstance(source, ad.AnnData):
        return source, source.uns.get("mmint_where", f"AnnData of modality '{modality}'")
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(
            "file not found", str(path), f"check the path given for modality '{modality}'"
        )
    try:
        with warnings.catch_warnings():
            # mmint reports duplicate names itself, as one clear error
            warnings.filterwarnings("ignore", message=".*names are not unique.*")
            return ad.read_h5ad(path, backed="r" if backed else None), str(path)
    except Exception as err:  # h5py/anndata raise many types for a broken file
        raise InputError(
            f"cannot read an AnnData ({type(err).__name__})", str(path), "give a valid .h5ad file"
        ) from err


def _aligned_modality(
    name: str, kind: str, adata: ad.AnnData, names: pd.Index, where: str
) -> Modality:
    x = adata.X
    if x is None:
        raise InputError(f"modality '{name}' has no X matrix", where, "store the values in adata.X")
    if adata.isbacked:
        from mmint.data.backed import BackedMatrix

        pos = adata.obs_names.get_indexer(names)
        same = adata.obs_names.equals(names)
        lazy = BackedMatrix(x, None if same else pos)
        return Modality(name, kind, lazy, adata.var_names.copy(), pos >= 0, where)
    x = sp.csr_matrix(x, dtype=np.float32) if sp.issparse(x) else np.asarray(x, dtype=np.float32)
    if adata.obs_names.equals(names):
        return Modality(name, kind, x, adata.var_names.copy(), np.ones(len(names), bool), where)
    pos = adata.obs_names.get_indexer(names)
    present = pos >= 0
    if sp.issparse(x):
        # rows of absent cells are empty: select present rows then scatter with a 0/1 matrix
        scatter = sp.csr_matrix(
            (np.ones(present.sum(), np.float32), (np.flatnonzero(present), pos[present])),
            shape=(len(names), adata.n_obs),
        )
        aligned = sp.csr_matrix(scatter @ x)
    else:
        aligned = np.zeros((len(names), x.shape[1]), np.float32)
        aligned[present] = x[pos[present]]
    return Modality(name, kind, aligned, adata.var_names.copy(), present, where)


def _blocks(x: Any, n_entries: int = 2**24) -> Iterator[tuple[int, Any]]:
    """``(first row, rows)`` of consecutive row blocks of about ``n_entries`` entries."""
    size = max(1, n_entries // max(1, x.shape[1]))
    for r0 in range(0, x.shape[0], size):
        yield r0, x[r0 : r0 + size]


def _nonzero_rows(x: np.ndarray | sp.csr_matrix) -> np.ndarray:
    """Whether each row holds a nonzero value."""
    if sp.issparse(x):
        return np.asarray((abs(x) > 0).sum(axis=1)).ravel() > 0
    return (x != 0).any(axis=1)


def _rows_where(x: np.ndarray | sp.csr_matrix, bad: np.ndarray) -> np.ndarray:
    """Row indices of entries flagged by ``bad`` (aligned with ``x.data`` when sparse)."""
    if not bad.any():
        return np.array([], dtype=np.int64)
    if sp.issparse(x):
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
        return np.unique(rows[bad])
    return np.flatnonzero(bad.any(axis=1))
