"""The parity table as markdown: mean +/- sd per implementation and variant, and paired
differences (mmint - original, same seeds) with their 95% t intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

SCORES = ["ari", "ari_class", "ari_kmeans", "nmi", "n_groups", "r2vw_cross"]
PAIRED = ["ari", "ari_class", "r2vw_cross"]


def mean_sd(values: pd.Series) -> str:
    """``mean +/- sd`` (sd with ddof 1), or ``-`` when empty."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "-"
    if len(v) == 1:
        return f"{v.mean():.3f}"
    return f"{v.mean():.3f} +/- {v.std(ddof=1):.3f}"


def paired_difference(a: pd.Series, b: pd.Series) -> tuple[float, float, float, int]:
    """Mean of ``a - b`` over the seeds both have, with its 95% t interval."""
    d = (pd.to_numeric(a, errors="coerce") - pd.to_numeric(b, errors="coerce")).dropna()
    n = len(d)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(d.mean())
    if n < 2 or float(d.std(ddof=1)) == 0:
        return mean, mean, mean, n
    lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=float(d.std(ddof=1)) / np.sqrt(n))
    return mean, float(lo), float(hi), n


def _columns(block: pd.DataFrame) -> list[str]:
    per_pair = sorted(c for c in block.columns if c.startswith(("r2vw.", "auroc.")))
    cross = [c for c in per_pair if c.split(".")[1] != c.split(".")[2]]
    present = [c for c in SCORES if c in block.columns and block[c].notna().any()]
    return present + [c for c in cross if block[c].notna().any()]


def report(table: pd.DataFrame, recorded: dict | None = None) -> str:
    """The whole markdown report of the parity CSV."""
    lines = [
        "# UnitedNet parity: mmint against the original code",
        "",
        "Same cells, folds, seeds and preprocessed inputs for both; both scored by "
        "`mmint.metrics`. Produced by `benchmarks/unitednet_parity.py` (commands and machine "
        "in `docs/unitednet.md`). `original` rows: the original code run by path; `mmint` rows "
        "by variant (`default`: mmint as configured; others: see the script's "
        "`variant_overrides`). Seconds per epoch: wall clock of the training stages per epoch, "
        "one thread, validation and checkpoint writing included.",
    ]
    if table.empty:
        return "\n".join(lines) + "\n"
    for (dataset, protocol), block in table.groupby(["dataset", "protocol"], sort=False):
        cols = _columns(block)
        lines += ["", f"## {dataset} / {protocol}", ""]
        lines.append("| implementation | variant | n | " + " | ".join(cols) + " | s/epoch |")
        lines.append("|---" * (len(cols) + 4) + "|")
        for (impl, variant), rows in block.groupby(["implementation", "variant"], sort=False):
            cells = [mean_sd(rows[c]) for c in cols]
            spe = mean_sd(rows["seconds_per_epoch"])
            lines.append(
                f"| {impl} | {variant} | {len(rows)} | " + " | ".join(cells) + f" | {spe} |"
            )
        rec = (recorded or {}).get((dataset, protocol))
        if rec and not (block["implementation"] == "original").any():
            lines.append(
                f"| original (recorded, anchor-results.md) | - | 3 | {rec[0]:.3f} +/- {rec[1]:.3f}"
                f" | {rec[2]:.3f} +/- {rec[3]:.3f} |" + " |" * (len(cols) - 1)
            )
        lines += _paired_lines(block)
    return "\n".join(lines) + "\n"


def _paired_lines(block: pd.DataFrame) -> list[str]:
    orig = block[block["implementation"] == "original"].set_index("seed")
    if orig.empty:
        return []
    keys = [k for k in PAIRED if k in block.columns and block[k].notna().any()]
    out = [
        "",
        "Paired difference mmint - original over the seeds both have (mean [95% interval], n):",
        "",
        "| variant | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for variant, rows in block[block["implementation"] == "mmint"].groupby("variant", sort=False):
        rows = rows.set_index("seed")
        cells = []
        for k in keys:
            mean, lo, hi, n = paired_difference(rows[k], orig[k].reindex(rows.index))
            cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}] (n={n})" if n else "-")
        out.append(f"| {variant} | " + " | ".join(cells) + " |")
    return out
