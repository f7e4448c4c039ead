"""Checks of the input files that need no aligned data: kinds, empty files, unique names, and
annotations that must agree between the files of the same cells. Each problem is one
:class:`~mmint.errors.InputError` that names it, where it is, and the fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from mmint.data.spec import KINDS
from mmint.errors import InputError

_EXAMPLES = 3


def examples(names: Sequence[Any]) -> str:
    """The first few of ``names`` as text, with ``...`` when there are more."""
    shown = [str(n) for n in list(names)[:_EXAMPLES]]
    return ", ".join(shown) + (" ..." if len(names) > _EXAMPLES else "")


def check_kinds(modalities: list[str], kinds: Mapping[str, str]) -> None:
    """Every modality has a known kind, and every kind a modality."""
    if not modalities:
        raise InputError("no modalities given", "data.paths", "give at least one modality file")
    missing = [m for m in modalities if m not in (kinds or {})]
    if missing:
        raise InputError(
            f"no kind given for modalities {missing}",
            "data.kinds",
            f"add e.g. 'data.kinds={{{missing[0]}: counts}}' (kinds: {list(KINDS)})",
        )
    extra = [m for m in kinds if m not in modalities]
    if extra:
        raise InputError(
            f"kinds given for modalities without data {extra}",
            "data.kinds",
            "remove them or add their files",
        )
    for m in modalities:
        if kinds[m] not in KINDS:
            raise InputError(
                f"unknown modality kind '{kinds[m]}'",
                f"data.kinds.{m}",
                f"use one of {list(KINDS)}",
            )


def check_not_empty(modality: str, adata: ad.AnnData, where: str) -> None:
    """At least one cell and one feature."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(
            f"modality '{modality}' is empty ({adata.n_obs} cells x {adata.n_vars} features)",
            where,
            "give a file with at least one cell and one feature",
        )


def check_unique_cells(modality: str, names: pd.Index, where: str) -> None:
    """Cell names are unique within a file (cells are matched across files by name)."""
    dup = names[names.duplicated()]
    if len(dup):
        raise InputError(
            f"{len(dup)} duplicate cell names in modality '{modality}', e.g. {examples(dup)}",
            where,
            "make obs_names unique (adata.obs_names_make_unique())",
        )


def check_unique_features(modality: str, names: pd.Index, where: str) -> None:
    """Feature names are unique within a modality: ``mmint predict`` matches features by name,
    and explain tables name them."""
    dup = names[names.duplicated(keep=False)]
    if len(dup):
        distinct = pd.unique(dup)
        raise InputError(
            f"{len(dup)} of {len(names)} features of modality '{modality}' share "
            f"{len(distinct)} names, e.g. {examples(distinct)}",
            where,
            "make var_names unique (adata.var_names_make_unique()) or sum the duplicates",
        )


def check_annotations_agree(
    obs: Mapping[str, pd.DataFrame], keys: Mapping[str, str | None], wheres: Mapping[str, str]
) -> None:
    """The label, batch and class columns say the same thing for the same cell in every file
    that has them (where both values are known): the column is read from whichever file has a
    value, so a disagreement would silently pick one.

    Parameters
    ----------
    obs
        ``{modality: obs}`` of each file.
    keys
        ``{role: column}`` (``label``, ``batch``, ``class``); ``None`` columns are skipped.
    wheres
        ``{modality: file}`` for the message.
    """
    mods = list(obs)
    for role, key in keys.items():
        if key is None:
            continue
        have = [m for m in mods if key in obs[m].columns]
        for i, a in enumerate(have):
            for b in have[i + 1 :]:
                shared = obs[a].index.intersection(obs[b].index, sort=False)
                va = obs[a][key].reindex(shared)
                vb = obs[b][key].reindex(shared)
                known = (va.notna() & vb.notna()).to_numpy()
                differ = known & (va.astype(str).to_numpy() != vb.astype(str).to_numpy())
                if not differ.any():
                    continue
                first = int(np.flatnonzero(differ)[0])
                raise InputError(
                    f"the {role} column '{key}' disagrees between modalities '{a}' and '{b}' "
                    f"for {int(differ.sum())} of {len(shared)} shared cells, e.g. "
                    f"{shared[first]}: '{va.iloc[first]}' vs '{vb.iloc[first]}'",
                    f"{wheres[a]} vs {wheres[b]}",
                    f"give the same obs['{key}'] in every file, or keep it in one file only",
                )
