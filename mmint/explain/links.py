"""Scoring feature-to-feature relevance against planted links (simulated data).

A planted link (``mmint.data.simulate``) drives its target feature from its source feature in
the cell types where it is active. For each link and each explained group where it is active
(most of the group's cells are of active types), the *rank* of the source among all src
features for the target (from :func:`mmint.explain.relevance.feature_relevance`) says whether
the explanation found it.

- ``recall@k``: fraction of (link, active group) whose source ranks in the top ``k`` for the
  target; chance ``k / n_src``.
- ``precision@k``: fraction of the top ``k`` src features of each target that are planted
  sources of it (one per target here, so at most ``1 / k``); chance ``1 / n_src``.
- the same ranks in groups where the link is *inactive* (a specific explanation ranks the
  source low there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from mmint.explain.relevance import Groups

LINK_COLUMNS = ["source_modality", "source_feature", "target_modality", "target_feature"]


def link_activity(
    links: pd.DataFrame, groups: Groups, cell_types: Sequence[str], min_fraction: float = 0.5
) -> pd.DataFrame:
    """Per (link, group): the fraction of the group's cells of the link's active types.

    Parameters
    ----------
    cell_types
        The cell type of every cell (the simulator's ``cell_type``).
    min_fraction
        A group with at least this fraction of active-type cells counts as active.
    """
    types = np.asarray(cell_types, dtype=str)
    rows = []
    for li, link in enumerate(links.itertuples(index=False)):
        active = set(str(link.active_types).split(";"))
        for gi, name in enumerate(groups.names):
            members = types[groups.codes == gi]
            if len(members) == 0:
                continue
            frac = float(np.isin(members, list(active)).mean())
            rows.append((li, name, frac, frac >= min_fraction))
    return pd.DataFrame(rows, columns=["link", "group", "active_fraction", "active"])


def link_ranks(
    relevance: pd.DataFrame,
    links: pd.DataFrame,
    activity: pd.DataFrame,
    n_src: Mapping[str, int],
) -> pd.DataFrame:
    """Rank of each link's source for its target, per explained group.

    ``relevance`` is a feature-relevance table; a (link, group) whose target was not explained
    there is left out; a source missing from the written top features gets rank ``NaN``
    (counted as a miss).
    """
    rel = relevance.set_index(["group", "src", "dst", "dst_feature", "src_feature"])["rank"]
    explained = set(
        map(tuple, relevance[["group", "src", "dst", "dst_feature"]].drop_duplicates().values)
    )
    rows = []
    for row in activity.itertuples(index=False):
        link = links.iloc[row.link]
        key = (row.group, link.source_modality, link.target_modality, link.target_feature)
        if key not in explained:
            continue
        rank = rel.get((*key, link.source_feature), np.nan)
        rank = float(rank.iloc[0]) if isinstance(rank, pd.Series) else float(rank)
        rows.append(
            {
                "link": int(row.link),
                **{c: link[c] for c in LINK_COLUMNS},
                "group": row.group,
                "active": bool(row.active),
                "active_fraction": row.active_fraction,
                "rank": rank,
                "n_src": int(n_src[link.source_modality]),
            }
        )
    return pd.DataFrame(rows)


def recovery(ranks: pd.DataFrame, k: int = 10) -> dict[str, Any]:
    """recall@k, precision@k, their chance levels and rank summaries (active groups), plus
    recall@k where the links are inactive."""
    out: dict[str, Any] = {"k": k}
    for state, sub in (("active", ranks[ranks["active"]]), ("inactive", ranks[~ranks["active"]])):
        if sub.empty:
            continue
        hit = (sub["rank"] <= k).to_numpy(dtype=float)  # NaN ranks are misses
        # one value per link (mean over its groups), then the mean over links
        per_link = pd.Series(hit).groupby(sub["link"].to_numpy()).mean()
        chance = np.minimum(k / sub["n_src"].to_numpy(dtype=float), 1.0)
        prefix = "" if state == "active" else "inactive_"
        out[f"{prefix}n_links"] = int(per_link.size)
        out[f"{prefix}recall@{k}"] = float(per_link.mean())
        out[f"{prefix}recall@{k}_chance"] = float(chance.mean())
        if state == "active":
            out[f"precision@{k}"] = float(per_link.mean() / k)
            out[f"precision@{k}_chance"] = float((1.0 / sub["n_src"].to_numpy(dtype=float)).mean())
            out[f"precision@{k}_max"] = 1.0 / k
            ranks_ = sub["rank"].to_numpy(dtype=float)
            out["median_rank"] = float(np.nanmedian(ranks_)) if np.isfinite(ranks_).any() else None
            out["mrr"] = float(np.nan_to_num(1.0 / ranks_, nan=0.0).mean())
            out["mrr_chance"] = float(
                np.mean([np.mean(1.0 / np.arange(1, n + 1)) for n in sub["n_src"]])
            )
    return out


def rank_stability(
    tables: Sequence[pd.DataFrame],
    keys: Sequence[str] = ("group", "src", "dst", "dst_feature"),
) -> dict[str, Any]:
    """Spearman correlation of relevance between tables (e.g. seeds), per ``keys`` block over
    the src features both tables hold, averaged over blocks; mean and min over table pairs."""
    from scipy.stats import spearmanr

    values = []
    for a, b in combinations(tables, 2):
        merged = a.merge(b, on=[*keys, "src_feature"], suffixes=("_a", "_b"))
        rhos = []
        for _, block in merged.groupby(list(keys)):
            if len(block) < 3:
                continue
            rho = spearmanr(block["relevance_a"], block["relevance_b"]).statistic
            if np.isfinite(rho):
                rhos.append(rho)
        values.append(float(np.mean(rhos)) if rhos else float("nan"))
    finite = [v for v in values if np.isfinite(v)]
    return {
        "pairs": len(values),
        "spearman_mean": float(np.mean(finite)) if finite else None,
        "spearman_min": float(np.min(finite)) if finite else None,
        "spearman_by_pair": values,
    }
