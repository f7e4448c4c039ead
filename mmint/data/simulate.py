"""Paired multi-modal single-cell data with a known ground truth (the default synthetic dataset).

The simulator draws ``n_types`` cell types grouped into ``n_major`` major groups, ``n_batches``
batches and one :class:`anndata.AnnData` per modality for the same cells. Every modality sees
all the major groups, and most of its type-driven variation is at that level (shared by all
modalities, so that any modality predicts most of any other). Within a major group the types
(subtypes) differ by smaller contrasts, and each modality sees the subtypes of only some
groups. So no single modality separates all types while all modalities together do. With the
default three modalities (8 types, 4 major groups {T0, T1}, {T2, T3}, {T4, T5}, {T6, T7}):

- ``rna`` (counts) separates T0, T1, T2 and T3 but not T4 from T5 nor T6 from T7;
- ``atac`` (binary) separates T4, T5, T6 and T7 but not T0 from T1 nor T2 from T3;
- ``ephys`` (continuous) separates the major groups only.

In general the modalities take these three roles in turn: subtypes of the major groups whose
types all lie in the first half of the types (by index), of those in the second half, and of
the groups that straddle the two halves (none by default; with two modalities the first role
takes them). A single modality sees every type.

Generative model, for cell ``i`` of type ``t`` (major group ``m(t)``), batch ``b`` and feature
``g``, with the type effect ``d[t, g] = M[m(t), g] + S[t, g]``:

- counts: ``x ~ NB(mean = L_i * r_g * exp(d[t, g] + c[b, g] + links), dispersion phi_g)``
  drawn as gamma-Poisson, with a log-normal baseline rate ``r_g`` (log sd 0.8, scaled so that
  a cell's expected total is ``L_i`` on average over the types), a log-normal library size ``L_i`` (typically 10,000
  UMIs, whatever the number of genes; log sd 0.3), a per-gene log batch factor ``c`` and a
  dispersion ``phi_g`` of about ``0.05 * noise``;
- binary: ``x ~ Bernoulli(sigmoid(a_g + d[t, g] + c[b, g] + u_i + links))`` with a baseline
  peak logit ``a_g`` (sd 1.5, shifted so that the expected fraction of zeros is ``sparsity``),
  a cell accessibility factor ``u_i`` (sd ``0.3 * noise``) and a batch logit shift ``c``;
- continuous: ``x = d[t, g] + c[b, g] + links + noise * eps``.

Type effects (log mean, logit, noise units): the major-group effect ``M`` is on 95% of the
genes, 90% of the peaks and all continuous features, with an RMS over the groups of
``E * (0.5 + U(0, 1))`` per feature, ``E`` = 1.6, 2 and 2.5; the subtype contrast ``S`` (zero
in the groups a modality does not resolve, centred within each group) is on 30% of the genes
and peaks and 50% of the continuous features, RMS ``E_s * (0.5 + U(0, 1))``, ``E_s`` = 0.9,
1.6 and 2 (continuous major-group effects are thus about 2.5 noise standard deviations at
``noise=1``). On the default dataset the mean of the training cells of a test cell's type and
batch predicts its rna (log-normalised) and ephys (standardised) features with a uniform R2
of about 0.78 and 0.83 (per-cell AUROC about 0.92 for atac), the mean of its major group and
batch with about 0.72 and 0.83 (AUROC 0.91). The PCA + KMeans ARI floor is about 0.70-0.73
for rna and atac (six of the eight types, the two unresolved pairs split by batch), about
0.43 for ephys, and 1.0 on the three together.

Planted links (the ground truth of :mod:`mmint.explain`): link ``l`` has a cell-level factor
``s_il ~ N(0, 1)``. It moves its source feature in every cell by ``unit * s_il`` and, in cells
of its active types only, its target feature (in another modality) by
``unit * strength * s_il``, where ``unit`` is 0.5 on the log mean for counts, 2 on the logit for
binary and 1 (one noise standard deviation) for continuous features. Link features carry no
subtype effect, and link peaks no type effect at all, so within a type their variation is the
link's (plus noise and batch); link genes and continuous link features keep their major-group
effect (a constant within a type). Link peaks get a moderate baseline accessibility (about
0.4) so that both states are common in every type.
Cell types and batches are drawn uniformly and independently for each cell.

Large data are generated in row chunks and assembled as CSR without a dense cells x features
matrix; the peak memory is about the size of the result plus one chunk (100,000 cells x
100,000 peaks at ``sparsity=0.9`` hold 1e9 nonzeros, about 8 GB as float32 CSR). Random numbers
are drawn per block of 64 cells from generators keyed by ``(seed, modality, block)``, so the
result depends on the arguments and ``seed`` only, not on ``chunk_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["SimulatedData", "simulate", "DEFAULT_MODALITIES"]

DEFAULT_MODALITIES: dict[str, tuple[str, int]] = {
    "rna": ("counts", 1000),
    "atac": ("binary", 2000),
    "ephys": ("continuous", 50),
}
_KINDS = ("counts", "binary", "continuous")
# Rows per random-number block: chunks are whole blocks, which keeps results chunk-invariant.
_BLOCK = 64
# Dense entries per chunk when chunk_size is not given (~80 MB of float32).
_CHUNK_ENTRIES = 20_000_000
# Feature-name prefix and minimum number of digits ("gene0000", "peak00000", "ephys00").
_PREFIX = {"rna": ("gene", 4), "atac": ("peak", 5)}

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
_LIBRARY_SIZE = 10000.0  # typical UMIs per cell (counts)
_LIBRARY_SD = 0.3  # log library size spread
# Major-group effect of link features relative to the others (none on link peaks, which keep
# a moderate accessibility in every type so that both states stay common).
_LINK_MAJOR_SCALE = {"counts": 1.0, "binary": 0.0, "continuous": 1.0}
_RATE_SD = 0.8  # log baseline expression spread over genes
_PEAK_SD = 1.5  # baseline peak logit spread over peaks
_ACCESS_SD = 0.3  # cell accessibility factor spread (binary), times ``noise``
_DISPERSION = 0.05  # typical NB dispersion 1/theta (counts), times ``noise``


@dataclass
class SimulatedData:
    """A simulated paired multi-modal dataset with its ground truth.

    Attributes
    ----------
    adatas
        One AnnData per modality, with the same ``obs_names`` (``"cell0000"``, ...) in the same
        order. ``X`` is float32: :class:`scipy.sparse.csr_matrix` for counts and binary, dense
        for continuous. ``obs`` has the categorical columns ``cell_type`` (``"T0"``, ...),
        ``major_type`` (``"M0"``, ...) and ``batch`` (``"b0"``, ...).
    kinds
        ``{modality: "counts" | "binary" | "continuous"}``.
    links
        The planted cross-modal links, one row each, with columns ``source_modality``,
        ``source_feature``, ``target_modality``, ``target_feature`` (feature names),
        ``active_types`` (``";"``-joined cell-type names) and ``strength``.
    """

    adatas: dict[str, anndata.AnnData]
    kinds: dict[str, str]
    links: pd.DataFrame


@dataclass
class _Link:
    source: str
    source_idx: int
    target: str
    target_idx: int
    active: np.ndarray  # bool per type
    strength: float


def _subtype_views(n_types: int, major: np.ndarray, n_modalities: int) -> list[np.ndarray]:
    """Per modality, whether it sees the subtypes within each major group (bool per group).

    The types are cut in two halves (by index). Role 0 (modalities 0, 3, ...) sees the
    subtypes of the major groups that lie in the first half, role 1 those in the second half
    and role 2 none, except the groups that straddle the cut, which go to role 2 (to role 0
    when there are only two modalities) so that no modality sees too many of them.
    """
    n_major = int(major.max()) + 1
    first = np.arange(n_types) < (n_types + 1) // 2
    in_first = np.array([first[major == g].all() for g in range(n_major)])
    in_second = np.array([not first[major == g].any() for g in range(n_major)])
    straddle = ~in_first & ~in_second
    out = []
    for j in range(n_modalities):
        if n_modalities == 1:
            sees = np.ones(n_major, dtype=bool)
        elif j % 3 == 0:
            sees = in_first | (straddle if n_modalities == 2 else False)
        elif j % 3 == 1:
            sees = in_second
        else:
            sees = straddle
        out.append(sees)
    return out


def _feature_names(modality: str, n: int) -> list[str]:
    prefix, width = _PREFIX.get(modality, (modality, 2))
    width = max(width, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _link_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Ordered modality pairs, interleaved so that a few links already mix directions."""
    n = len(names)
    return [(names[a], names[(a + k) % n]) for k in range(1, n) for a in range(n)]


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
            log_library = np.log(_LIBRARY_SIZE)
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


def simulate(
    n_cells: int = 2000,
    n_types: int = 8,
    n_major: int = 4,
    n_batches: int = 2,
    modalities: dict[str, tuple[str, int]] | None = None,
    n_links: int = 12,
    link_strength: float = 1.5,
    batch_effect: float = 0.5,
    noise: float = 1.0,
    sparsity: float = 0.9,
    seed: int = 0,
    chunk_size: int | None = None,
) -> SimulatedData:
    """Simulate paired multi-modal single-cell data with known types, batches and links.

    Parameters
    ----------
    n_cells
        Number of cells (shared by all modalities).
    n_types
        Number of cell types ``"T0"``, ...; type ``t`` belongs to major group
        ``t * n_major // n_types``.
    n_major
        Number of major groups ``"M0"``, ... (at most ``n_types``).
    n_batches
        Number of batches ``"b0"``, ..., each with its own per-feature shift.
    modalities
        ``{name: (kind, n_features)}`` with kind ``"counts"``, ``"binary"`` or
        ``"continuous"``; default ``{"rna": ("counts", 1000), "atac": ("binary", 2000),
        "ephys": ("continuous", 50)}``. The order sets each modality's view of the types (see
        the module docstring).
    n_links
        Number of planted cross-modal links (needs at least two modalities).
    link_strength
        Effect of a link's factor on its target relative to its source.
    batch_effect
        Scale of the batch shifts (log fold for counts, logit for binary, noise units for
        continuous; times 0.5, 1 and 1).
    noise
        Scale of within-type variability: the continuous noise standard deviation, the NB
        dispersion and the cell accessibility spread (counts also carry the Poisson noise of
        their library size, about 10,000 UMIs per cell).
    sparsity
        Target expected fraction of zeros in binary modalities (link peaks excluded).
    seed
        Seed of everything; the same arguments give identical data.
    chunk_size
        Cells generated at a time (rounded up to a multiple of 64); default
        ``max(1, 20_000_000 // n_features)``. It bounds memory only: the result does not
        depend on it.

    Returns
    -------
    SimulatedData
        The per-modality AnnData objects, their kinds and the table of planted links.
    """
    modalities = dict(DEFAULT_MODALITIES if modalities is None else modalities)
    if n_cells < 1 or n_types < 1 or n_batches < 1:
        raise ValueError("n_cells, n_types and n_batches must be at least 1")
    if not 1 <= n_major <= n_types:
        raise ValueError(f"n_major must be between 1 and n_types ({n_types}), got {n_major}")
    if not modalities:
        raise ValueError("modalities must name at least one modality")
    for name, (kind, n_feat) in modalities.items():
        if kind not in _KINDS:
            raise ValueError(f"modality {name!r}: kind must be one of {_KINDS}, got {kind!r}")
        if n_feat < 1:
            raise ValueError(f"modality {name!r}: needs at least one feature")
    if n_links > 0 and len(modalities) < 2:
        raise ValueError("cross-modal links need at least two modalities (or n_links=0)")
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")

    cell_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    major_of_type = np.arange(n_types) * n_major // n_types
    cell_type = cell_rng.integers(0, n_types, n_cells)
    batch = cell_rng.integers(0, n_batches, n_cells)
    factors = cell_rng.standard_normal((n_cells, n_links), dtype=np.float32)

    names = list(modalities)
    views = _subtype_views(n_types, major_of_type, len(names))
    mods = {
        name: _Modality(
            name,
            modalities[name][0],
            int(modalities[name][1]),
            j,
            major_of_type,
            views[j],
            n_batches,
            cell_type,
            batch,
            seed,
            batch_effect,
            noise,
            sparsity,
        )
        for j, name in enumerate(names)
    }

    # Links: directions cycle over ordered modality pairs, activity over the major groups.
    pairs = _link_pairs(names)
    plan = [(pairs[k % len(pairs)], k % n_major) for k in range(n_links)]
    wanted = {name: 0 for name in names}
    for (src, dst), _ in plan:
        wanted[src] += 1
        wanted[dst] += 1
    chosen = {name: mods[name].reserve_link_features(wanted[name]) for name in names}
    used = {name: list(chosen[name]) for name in names}
    links: list[_Link] = []
    for (src, dst), grp in plan:
        links.append(
            _Link(
                src,
                chosen[src].pop(),
                dst,
                chosen[dst].pop(),
                major_of_type == grp,
                float(link_strength),
            )
        )
    for k, link in enumerate(links):
        mods[link.source].link_terms.append((link.source_idx, k, 1.0, None))
        mods[link.target].link_terms.append((link.target_idx, k, link.strength, link.active))

    counts = np.bincount(cell_type * n_batches + batch, minlength=n_types * n_batches)
    weights = counts / counts.sum()
    for name in names:
        mods[name].finalize(used[name], weights)

    cell_names = [f"cell{i:0{max(4, len(str(n_cells - 1)))}d}" for i in range(n_cells)]
    type_names = [f"T{t}" for t in range(n_types)]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, type_names),
            "major_type": pd.Categorical.from_codes(
                major_of_type[cell_type], [f"M{m}" for m in range(n_major)]
            ),
            "batch": pd.Categorical.from_codes(batch, [f"b{b}" for b in range(n_batches)]),
        },
        index=pd.Index(cell_names),
    )

    adatas: dict[str, anndata.AnnData] = {}
    feature_names = {}
    for name in names:
        mod = mods[name]
        if chunk_size is None:
            rows = max(1, _CHUNK_ENTRIES // mod.n_features)
        else:
            rows = max(1, int(chunk_size))
        rows = -(-rows // _BLOCK) * _BLOCK
        if mod.kind == "continuous":
            x = np.empty((n_cells, mod.n_features), dtype=np.float32)
            for start in range(0, n_cells, rows):
                stop = min(start + rows, n_cells)
                x[start:stop] = mod.rows(start, stop, factors)
        else:
            x = _to_csr(mod, n_cells, rows, factors)
        feature_names[name] = _feature_names(name, mod.n_features)
        adatas[name] = anndata.AnnData(
            X=x, obs=obs.copy(), var=pd.DataFrame(index=pd.Index(feature_names[name]))
        )

    table = pd.DataFrame(
        {
            "source_modality": [lk.source for lk in links],
            "source_feature": [feature_names[lk.source][lk.source_idx] for lk in links],
            "target_modality": [lk.target for lk in links],
            "target_feature": [feature_names[lk.target][lk.target_idx] for lk in links],
            "active_types": [
                ";".join(type_names[t] for t in np.flatnonzero(lk.active)) for lk in links
            ],
            "strength": np.array([lk.strength for lk in links], dtype=np.float64),
        }
    )
    return SimulatedData(adatas=adatas, kinds={n: mods[n].kind for n in names}, links=table)
