"""Inputs larger than memory: ``.h5ad`` matrices read lazily, in file blocks (``data.backed``).

With ``data.backed: true`` a modality's raw matrix stays in its ``.h5ad`` file (anndata's
backed mode: a sparse ``X`` is read through :func:`anndata.io.sparse_dataset`, a dense one as
an ``h5py`` dataset). :class:`BackedMatrix` reads the rows a batch needs. The file is cut into
blocks of ``block_rows`` consecutive rows; a read loads the blocks that hold the requested rows
with one contiguous slice each (fast on HDF5, where scattered rows cost one seek each) and
keeps the last few blocks in a small cache. Training batches are drawn in shuffled blocks
(:class:`mmint.data.datamodule.PairedDataModule`, ``shuffle_block``) so that every block is
read about once per epoch. :class:`TransformedRows` applies a fitted input transform to the
rows as they are read, so the model inputs are never held whole either.

Only the obs table, the masks and the fitted transforms are held in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import scipy.sparse as sp

#: rows per file block (a read unit) and blocks kept in the cache
BLOCK_ROWS = 1024
CACHE_BLOCKS = 16


class BackedMatrix:
    """Rows of an on-disk matrix, mapped to the cells of the paired data.

    Parameters
    ----------
    source
        The file's matrix: anndata's backed sparse dataset or an ``h5py`` dataset (anything
        with ``shape`` and contiguous row slicing ``source[a:b]``).
    positions
        File row of each cell of the paired data, -1 where the cell lacks the modality
        (``None``: cell ``i`` is file row ``i``).
    block_rows, cache_blocks
        Read unit and cache size (see the module docstring).
    """

    def __init__(
        self,
        source: Any,
        positions: np.ndarray | None = None,
        block_rows: int = BLOCK_ROWS,
        cache_blocks: int = CACHE_BLOCKS,
    ) -> None:
        self.source = source
        self.positions = None if positions is None else np.asarray(positions, dtype=np.int64)
        n = source.shape[0] if positions is None else len(self.positions)
        self.shape = (int(n), int(source.shape[1]))
        self.sparse = _is_sparse_dataset(source) or sp.issparse(source)
        self.block_rows, self.cache_blocks = int(block_rows), int(cache_blocks)
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self.blocks_read = 0

    @property
    def ndim(self) -> int:
        """Always 2."""
        return 2

    def file_rows(self, cells: np.ndarray) -> np.ndarray:
        """File row of each cell (-1: absent)."""
        return cells if self.positions is None else self.positions[cells]

    def _block(self, k: int) -> Any:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        a = k * self.block_rows
        b = min(a + self.block_rows, self.source.shape[0])
        block = self.source[a:b]
        block = sp.csr_matrix(block, dtype=np.float32) if sp.issparse(block) else block
        block = block if sp.issparse(block) else np.asarray(block, dtype=np.float32)
        self._cache[k] = block
        self.blocks_read += 1
        while len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return block

    def __getitem__(self, idx: Any) -> np.ndarray | sp.csr_matrix:
        """Rows ``idx`` (an int array or a slice) as float32 CSR (sparse file) or array."""
        if isinstance(idx, tuple):
            rows, cols = idx
            return self[rows][:, cols]
        cells = np.arange(self.shape[0])[idx] if isinstance(idx, slice) else np.asarray(idx)
        cells = cells.astype(np.int64).ravel()
        rows = self.file_rows(cells)
        present = rows >= 0
        blocks = rows[present] // self.block_rows
        parts, order = [], []
        for k in np.unique(blocks):
            take = np.flatnonzero(present)[blocks == k]
            parts.append(self._block(int(k))[rows[take] - k * self.block_rows])
            order.append(take)
        return _assemble(parts, order, len(cells), self.shape[1], self.sparse)

    def __len__(self) -> int:
        return self.shape[0]


class TransformedRows:
    """A fitted input transform applied to the rows of a :class:`BackedMatrix` on read.

    ``transform`` may be ``None`` (the selected raw values, e.g. counts for a likelihood).
    """

    def __init__(self, raw: BackedMatrix, transform: Any, select_only: bool = False) -> None:
        self.raw, self.transform, self.select_only = raw, transform, select_only
        self.shape = (raw.shape[0], len(transform.features))
        self.ndim = 2

    def __getitem__(self, idx: Any) -> np.ndarray | sp.csr_matrix:
        """Transformed rows ``idx``."""
        if isinstance(idx, tuple):
            rows, cols = idx
            return self[rows][:, cols]
        x = self.transform.select(self.raw[idx])
        if self.select_only:
            return x
        return self.transform.apply(x)

    def __len__(self) -> int:
        return self.shape[0]


def is_lazy(x: Any) -> bool:
    """Whether ``x`` is read from disk on demand (not an in-memory matrix)."""
    return isinstance(x, BackedMatrix | TransformedRows)


def _is_sparse_dataset(source: Any) -> bool:
    from anndata.abc import CSCDataset, CSRDataset

    return isinstance(source, CSRDataset | CSCDataset)


def _assemble(
    parts: list[Any], order: list[np.ndarray], n: int, width: int, sparse: bool
) -> np.ndarray | sp.csr_matrix:
    """Stack row parts and put each row at its position (missing rows are zero)."""
    if not parts:
        return sp.csr_matrix((n, width), dtype=np.float32) if sparse else np.zeros((n, width))
    where = np.concatenate(order)
    if sparse:
        stacked = sp.vstack(parts, format="csr", dtype=np.float32)
        # row where[j] of the result is row j of the stack; absent cells stay empty
        scatter = sp.csr_matrix(
            (np.ones(len(where), np.float32), (where, np.arange(len(where)))),
            shape=(n, len(where)),
        )
        out = sp.csr_matrix(scatter @ stacked)
        out.sort_indices()
        return out
    out = np.zeros((n, width), dtype=np.float32)
    out[where] = np.concatenate(parts)
    return out
