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
  a cell's expected total is ``L_i`` on average over the types), a log-normal library size ``L_i``
  (median ``library_size``, 10,000 UMIs by default, whatever the number of genes; log sd 0.3),
  a per-gene log batch factor ``c`` and a
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

from collections.abc import Mapping
from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd

from mmint.data.sim_modality import _BLOCK, _Modality, _to_csr

__all__ = ["SimulatedData", "simulate", "DEFAULT_MODALITIES"]

DEFAULT_MODALITIES: dict[str, tuple[str, int]] = {
    "rna": ("counts", 1000),
    "atac": ("binary", 2000),
    "ephys": ("continuous", 50),
}
_KINDS = ("counts", "binary", "continuous")
# Dense entries per chunk when chunk_size is not given (~80 MB of float32).
_CHUNK_ENTRIES = 20_000_000
_DEFAULT_LIBRARY = 10_000.0  # median UMIs per cell of counts modalities
# Feature-name prefix and minimum number of digits ("gene0000", "peak00000", "ephys00").
_PREFIX = {"rna": ("gene", 4), "atac": ("peak", 5)}


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


def _library_sizes(
    library_size: float | Mapping[str, float], modalities: dict[str, tuple[str, int]]
) -> dict[str, float]:
    """``library_size`` per modality (a mapping names some; the others keep the default)."""
    if isinstance(library_size, Mapping):
        unknown = set(library_size) - set(modalities)
        if unknown:
            raise ValueError(f"library_size names unknown modalities {sorted(unknown)}")
        sizes = {m: float(library_size.get(m, _DEFAULT_LIBRARY)) for m in modalities}
    else:
        sizes = dict.fromkeys(modalities, float(library_size))
    for m, size in sizes.items():
        if not size > 0:
            raise ValueError(f"library_size of {m!r} must be positive, got {size}")
    return sizes


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
    library_size: float | Mapping[str, float] = _DEFAULT_LIBRARY,
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
    library_size
        Median total count per cell of counts modalities, one value for all or
        ``{modality: value}`` (modalities not named keep 10,000). It sets the fraction of
        nonzero counts: 2,000 genes hold about 58% nonzeros at 10,000 UMIs and 34% at 2,500.
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
    libraries = _library_sizes(library_size, modalities)

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
            libraries[name],
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
