"""How the cells of several files become one table: the join of their names (strict, inner
or outer) and the merge of their ``obs`` annotations."""

from __future__ import annotations

import anndata as ad
import pandas as pd

from mmint.data.checks import examples
from mmint.errors import InputError


def join_names(
    names: dict[str, pd.Index], join: str, loaded: dict[str, tuple[ad.AnnData, str]]
) -> tuple[pd.Index, list[str]]:
    """The cells of the paired data under ``join`` (``strict``, ``inner`` or ``outer``) and
    notes on dropped or missing cells; one :class:`InputError` when the join is impossible."""
    mods = list(names)
    first = names[mods[0]]
    if join == "strict":
        for m in mods[1:]:
            if len(names[m]) == len(first) and names[m].equals(first):
                continue
            only_a = first.difference(names[m], sort=False)
            only_b = names[m].difference(first, sort=False)
            if len(only_a) == 0 and len(only_b) == 0:
                raise InputError(
                    f"modalities '{mods[0]}' and '{m}' hold the same cells in a different order",
                    f"{loaded[mods[0]][1]} vs {loaded[m][1]}",
                    "reorder one file (adata[other.obs_names]) or use data.join=inner",
                )
            shown = examples(only_a.append(only_b))
            raise InputError(
                f"cells differ between modalities '{mods[0]}' and '{m}': {len(only_a)} only in "
                f"'{mods[0]}', {len(only_b)} only in '{m}', e.g. {shown}",
                f"{loaded[mods[0]][1]} vs {loaded[m][1]}",
                "use data.join=inner to keep shared cells or data.join=outer to keep all",
            )
        return first, []
    if join == "inner":
        shared = first
        for m in mods[1:]:
            shared = shared.intersection(names[m], sort=False)
        dropped = len(pd.Index([]).append([names[m] for m in mods]).unique()) - len(shared)
        if len(shared) == 0:
            raise InputError(
                "no cell is shared by all modalities",
                ", ".join(w for _, w in loaded.values()),
                "check that the files describe the same cells (obs_names must match)",
            )
        return shared, [f"join=inner: kept {len(shared)} shared cells, dropped {dropped}"]
    union = first
    for m in mods[1:]:
        union = union.append(names[m].difference(union, sort=False))
    missing = {m: len(union) - len(names[m]) for m in mods}
    return union, [f"join=outer: missing-modality counts {missing}"]


def merge_obs(obs: dict[str, pd.DataFrame], names: pd.Index) -> pd.DataFrame:
    """One ``obs`` for ``names``: each column from whichever file has a value (the files agree
    where both do: :func:`mmint.data.checks.check_annotations_agree`)."""
    merged = pd.DataFrame(index=names)
    for frame in obs.values():
        frame = frame.reindex(names)
        for col in frame.columns:
            if col not in merged.columns:
                merged[col] = frame[col].astype(object)
            else:
                merged[col] = merged[col].where(merged[col].notna(), frame[col].astype(object))
    for col in merged.columns:
        if merged[col].map(lambda v: isinstance(v, str)).any():
            merged[col] = merged[col].astype("category")
        else:
            merged[col] = merged[col].infer_objects()
    return merged
