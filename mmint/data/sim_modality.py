"""One simulated modality: its parameters (type, batch and cell effects) and a row generator.

Part of :mod:`mmint.data.simulate`, whose docstring states the generative model. A
:class:`_Modality` draws its parameters from a generator keyed by ``(seed, modality)`` and its
rows per block of ``_BLOCK`` cells (keyed by ``(seed, modality, block)``), so the data do not
depend on the chunk size; :func:`_to_csr` assembles a sparse modality chunk by chunk.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Rows per random-number block: chunks are whole blocks, which keeps results chunk-invariant.
_BLOCK = 64

# Per-kind scale of a link's effect on a feature (log mean, logit, noise units).
_LINK_UNIT = {"counts": 0.5, "binary": 2.0, "continuous": 1.0}
# Type effects (log mean, logit, noise units): the fraction of features that differ between
# the major groups and their typical RMS effect over the groups; the same for the subtype
# contrasts within the major groups a modality sees.
_MAJOR_FRAC = {"counts": 0.95, "binary": 0.9, "continuous": 1.0}
_MAJOR_EFFECT = {"counts": 1.6, "binary": 2.0, "continuous": 2.5}
_SUBTYPE_FRAC = {"counts": 0.3, "binary": 0.3, "continuous": 0.5}
_SUBTYPE_EFFECT = {"counts": 0.9, "binary": 1.6, "continuous": 2.0}
# Batch shift standard deviation per unit of ``batch_effect``.
_BATCH_UNIT = {"counts": 0.5, "binary": 1.0, "continuous": 1.0}
_LIBRARY_SD = 0.3  # log library size spread
# Major-group effect of link features relative to the others (none on link peaks, which keep
# a moderate accessibility in every type so that both states stay common).
_LINK_MAJOR_SCALE = {"counts": 1.0, "binary": 0.0, "continuous": 1.0}
_RATE_SD = 0.8  # log baseline expression spread over genes
_PEAK_SD = 1.5  # baseline peak logit spread over peaks
_ACCESS_SD = 0.3  # cell accessibility factor spread (binary), times ``noise``
_DISPERSION = 0.05  # typical NB dispersion 1/theta (counts), times ``noise``


def _unit_patterns(rng: np.random.Generator, n_levels: int, n_features: int) -> np.ndarray:
    """Random (levels x features) patterns, centred over the levels with unit RMS per feature."""
    pattern = rng.standard_normal((n_levels, n_features))
    pattern -= pattern.mean(axis=0)
    rms = np.sqrt((pattern**2).mean(axis=0))
    return pattern / np.where(rms > 0, rms, 1.0)


def _type_effects(
    rng: np.random.Generator,
    kind: str,
    major: np.ndarray,
    sees: np.ndarray,
    n_features: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Type effects (types x features): shared major-group effects and subtype contrasts.

    A fraction ``_MAJOR_FRAC`` of the features differs between the major groups (RMS over the
    groups ``_MAJOR_EFFECT * (0.5 + U(0, 1))``); within each major group whose subtypes the
    modality sees, a fraction ``_SUBTYPE_FRAC`` differs between its types (centred within the
    group, RMS ``_SUBTYPE_EFFECT * (0.5 + U(0, 1))``). Draws do not depend on ``sees``.
    Returns the major-group part and the subtype part (both types x features, float32).
    """
    n_major = int(major.max()) + 1
    mask = rng.random(n_features) < _MAJOR_FRAC[kind]
    size = _MAJOR_EFFECT[kind] * (0.5 + rng.random(n_features))
    pattern = _unit_patterns(rng, n_major, n_features)
    major_part = (pattern * (mask * size))[major].astype(np.float32)
    out = np.zeros_like(major_part)
    for g in range(n_major):
        members = np.flatnonzero(major == g)
        mask = rng.random(n_features) < _SUBTYPE_FRAC[kind]
        size = _SUBTYPE_EFFECT[kind] * (0.5 + rng.random(n_features))
        pattern = _unit_patterns(rng, len(members), n_features)
        if sees[g]:
            out[members] = pattern * (mask * size)
    return major_part, out


def _calibrate_offset(
    base: np.ndarray, shifts: np.ndarray, weights: np.ndarray, access_sd: float, target: float
) -> float:
    """Scalar logit offset so that the expected fraction of ones is ``target``.

    ``shifts`` holds the (type, batch) logit shifts of the features, ``weights`` the share of
    cells in each (type, batch); the cell factor is integrated with Gauss-Hermite nodes.
    """
    nodes, w_nodes = np.polynomial.hermite_e.hermegauss(7)
    w_nodes = w_nodes / w_nodes.sum()
    logits = base[None, :] + shifts  # groups x features
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        mean = 0.0
        for z, wz in zip(nodes, w_nodes, strict=True):
            p = 1.0 / (1.0 + np.exp(-(logits + mid + access_sd * z)))
            mean += wz * float(weights @ p.mean(axis=1))
        if mean < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class _Modality:
    """Parameters of one modality and a generator of its rows."""

    def __init__(
        self,
        name: str,
        kind: str,
        n_features: int,
        index: int,
        major: np.ndarray,
        sees: np.ndarray,
        n_batches: int,
        cell_type: np.ndarray,
        batch: np.ndarray,
        seed: int,
        batch_effect: float,
        noise: float,
        sparsity: float,
        library_size: float,
    ) -> None:
        self.name, self.kind, self.n_features, self.index = name, kind, n_features, index
        self.n_batches = n_batches
        self.seed = seed
        self.noise = noise
        self.cell_type, self.batch = cell_type, batch
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
        n_cells = len(cell_type)
        self.major_effect, self.subtype_effect = _type_effects(rng, kind, major, sees, n_features)
        self.batch_shift = (
            rng.normal(0.0, _BATCH_UNIT[kind] * batch_effect, (n_batches, n_features))
        ).astype(np.float32)
        self.base = np.zeros(n_features, np.float32)
        self.cell_factor = np.zeros(n_cells, np.float32)
        self.dispersion = np.zeros(n_features, np.float32)
        if kind == "counts":
            rate = np.exp(rng.normal(0.0, _RATE_SD, n_features))
            self.base = np.log(rate / rate.sum()).astype(np.float32)
            log_library = np.log(library_size)
            self.cell_factor = (log_library + rng.normal(0.0, _LIBRARY_SD, n_cells)).astype(
                np.float32
            )
            dispersion = noise * _DISPERSION * np.exp(rng.normal(0.0, 0.5, n_features))
            self.dispersion = dispersion.astype(np.float32)
        elif kind == "binary":
            self.base = rng.normal(0.0, _PEAK_SD, n_features).astype(np.float32)
            self.cell_factor = rng.normal(0.0, _ACCESS_SD * noise, n_cells).astype(np.float32)
            self._sparsity = sparsity
        # Per-feature link terms: (feature, link index, coefficient, active types or None).
        self.link_terms: list[tuple[int, int, float, np.ndarray | None]] = []
        self._rng = rng

    def reserve_link_features(self, n: int) -> list[int]:
        """Pick ``n`` unused features suited to carry a link (well expressed for counts)."""
        if self.kind == "counts":
            # Highly expressed genes, so the link is not drowned in sampling noise.
            order = np.argsort(-self.base, kind="stable")
            pool = order[: max(n, self.n_features // 4)]
        else:
            pool = np.arange(self.n_features)
        if len(pool) < n:
            raise ValueError(
                f"modality {self.name!r} has too few features ({self.n_features}) for its links"
            )
        return [int(g) for g in self._rng.choice(pool, size=n, replace=False)]

    def finalize(self, link_features: list[int], group_weights: np.ndarray) -> None:
        """Adjust link features, calibrate depth or sparsity, build lookup tables."""
        if link_features:
            self.subtype_effect[:, link_features] = 0.0
            self.major_effect[:, link_features] *= np.float32(_LINK_MAJOR_SCALE[self.kind])
        self.type_effect = self.major_effect + self.subtype_effect
        del self.major_effect, self.subtype_effect
        if self.kind == "counts":
            # Baseline rates such that a cell's expected total is exp(cell factor) on average.
            shifts = (self.type_effect[:, None, :] + self.batch_shift[None, :, :]).reshape(
                -1, self.n_features
            )
            total = group_weights @ np.exp(shifts.astype(np.float64) + self.base).sum(axis=1)
            self.base -= np.float32(np.log(total))
        if self.kind == "binary" and link_features:
            # Moderately accessible link peaks, so both states are frequent.
            self.base[link_features] = self._rng.normal(-0.5, 0.3, len(link_features))
        rest = np.setdiff1d(np.arange(self.n_features), link_features)
        if self.kind == "binary" and len(rest):
            sub = rest
            if len(rest) > 4096:
                sub = np.sort(self._rng.choice(rest, size=4096, replace=False))
            shifts = (self.type_effect[:, None, sub] + self.batch_shift[None, :, sub]).reshape(
                -1, len(sub)
            )
            offset = _calibrate_offset(
                self.base[sub],
                shifts,
                group_weights,
                _ACCESS_SD * self.noise,
                1.0 - self._sparsity,
            )
            self.base[rest] += np.float32(offset)
        del self._rng
        # Linear predictor (log mean, logit or mean) per (type, batch) group: a chunk is then
        # one gather plus a per-cell term, and exp() is taken per group rather than per entry.
        self.table = (
            self.type_effect[:, None, :] + self.batch_shift[None, :, :] + self.base
        ).reshape(-1, self.n_features)
        self.sign = {"counts": 1.0, "binary": -1.0, "continuous": 0.0}[self.kind]
        if self.sign:
            self.exp_table = np.exp(self.sign * self.table).astype(np.float32)
            self.exp_cell = np.exp(self.sign * self.cell_factor).astype(np.float32)
        del self.type_effect

    def _predictor(self, rows: slice, factors: np.ndarray) -> np.ndarray:
        """Dense (rows x features) float32 chunk of ``exp(sign * eta)`` (or ``eta``)."""
        t = self.cell_type[rows]
        group = t * self.n_batches + self.batch[rows]
        if self.sign:
            out = self.exp_table[group]
            out *= self.exp_cell[rows, None]
        else:
            out = self.table[group]
        unit = _LINK_UNIT[self.kind]
        for g, link, coef, active in self.link_terms:
            shift = factors[rows, link] * np.float32(unit * coef)
            if active is not None:
                shift = shift * active[t]
            if self.sign:
                eta = self.table[group, g] + self.cell_factor[rows] + shift
                out[:, g] = np.exp(self.sign * eta)
            else:
                out[:, g] += shift
        return out

    def rows(self, start: int, stop: int, factors: np.ndarray) -> np.ndarray:
        """Dense rows ``start:stop`` (a whole number of blocks, or up to the last cell)."""
        out = self._predictor(slice(start, stop), factors)
        theta = (1.0 / self.dispersion)[None, :] if self.kind == "counts" else None
        # Binary rows come back as a boolean mask (cheaper to scan for nonzeros).
        result = np.empty(out.shape, dtype=bool) if self.kind == "binary" else out
        for b0 in range(start, stop, _BLOCK):
            b1 = min(b0 + _BLOCK, stop)
            rng = np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=(2, self.index, b0 // _BLOCK))
            )
            part = out[b0 - start : b1 - start]
            if self.kind == "counts":
                part[:] = rng.poisson(rng.gamma(theta, part / theta))
            elif self.kind == "binary":
                # u < sigmoid(eta)  <=>  u * (1 + exp(-eta)) < 1, without a division.
                part += 1.0
                part *= rng.random(part.shape, dtype=np.float32)
                np.less(part, 1.0, out=result[b0 - start : b1 - start])
            else:
                part += self.noise * rng.standard_normal(part.shape, dtype=np.float32)
        return result


class _Buffer:
    """A growable 1-d array, allocated generously once so that chunks are appended in place.

    Untouched pages of an ``np.empty`` array take no physical memory, so over-allocating is
    cheap, while concatenating a list of chunks at the end would double the peak memory.
    """

    def __init__(self, dtype: type) -> None:
        self.array = np.empty(0, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray, expected_total: int) -> None:
        need = self.size + len(values)
        if need > len(self.array):
            grown = np.empty(max(need, expected_total, len(self.array) * 3 // 2), self.array.dtype)
            grown[: self.size] = self.array[: self.size]
            self.array = grown
        self.array[self.size : need] = values
        self.size = need

    def result(self) -> np.ndarray:
        return self.array[: self.size]


def _to_csr(mod: _Modality, n_cells: int, chunk_size: int, factors: np.ndarray) -> sp.csr_matrix:
    """Assemble a sparse modality chunk by chunk, never holding all rows densely."""
    indices, data = _Buffer(np.int32), _Buffer(np.float32)
    row_nnz = np.zeros(n_cells, dtype=np.int64)
    for start in range(0, n_cells, chunk_size):
        stop = min(start + chunk_size, n_cells)
        dense = mod.rows(start, stop, factors)
        flat = np.flatnonzero(dense)
        row_nnz[start:stop] = np.bincount(flat // mod.n_features, minlength=stop - start)
        # Room for the whole matrix at 1.2 times the density seen so far.
        expected = int(1.2 * (indices.size + len(flat)) / stop * n_cells) + len(flat)
        indices.extend(flat % mod.n_features, expected)
        # Binary values are all one and are made at the end.
        if mod.kind == "counts":
            data.extend(dense.ravel()[flat], expected)
        del dense, flat
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    nnz = int(indptr[-1])
    idx = indices.result()
    if nnz < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    else:  # beyond int32 offsets scipy needs int64 indices too
        idx = idx.astype(np.int64)
    values = data.result() if mod.kind == "counts" else np.ones(nnz, dtype=np.float32)
    return sp.csr_matrix((values, idx, indptr), shape=(n_cells, mod.n_features), copy=False)
