"""Ablation statistics: paired differences variant - reference on the same seed with 95%
Student-t intervals, and the multi-task vs single-task verdicts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mmint.benchmark.aggregate import GROUP, LABELS, metrics_present, ok_rows
from mmint.benchmark.tables import fmt_signed, markdown_table

if TYPE_CHECKING:
    from mmint.benchmark.report import ReportOptions

#: metrics of the paired (ablation) comparisons
PAIRED = ["ari", "r2_cross", "ari_kmeans", "nmi", "foscttm", "latent_distance", "scib.total"]


def t_interval(
    values: Sequence[float], level: float = 0.95
) -> tuple[float, float, float, float, int]:
    """``(mean, sd, low, high, n)`` of ``values`` with the one-sample Student-t interval of
    :func:`scipy.stats.ttest_1samp` (NaN for n < 2); missing values are left out."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan, n
    with warnings.catch_warnings():  # identical values: a zero-width interval, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_1samp(x, 0.0).confidence_interval(level)
    return mean, float(x.std(ddof=1)), float(ci.low), float(ci.high), n


def paired_differences(
    table: pd.DataFrame, reference: str, metrics: Sequence[str] = PAIRED
) -> pd.DataFrame:
    """Per dataset, model and non-reference variant: the differences variant - reference of
    the same seed, their mean, sd, n and 95% t interval (columns ``data, model, variant,
    metric, n, mean, sd, ci_low, ci_high``)."""
    ok = ok_rows(table)
    metrics = metrics_present(ok, metrics)
    rows = []
    for (data, model), sub in ok.groupby(["data", "model"], sort=False):
        ref = (
            sub[sub["variant"] == reference].drop_duplicates("seed", keep="last").set_index("seed")
        )
        if ref.empty:
            continue
        for variant in [v for v in sub["variant"].unique() if v != reference]:
            var = (
                sub[sub["variant"] == variant]
                .drop_duplicates("seed", keep="last")
                .set_index("seed")
            )
            seeds = var.index.intersection(ref.index)
            for m in metrics:
                diff = pd.to_numeric(var.loc[seeds, m], errors="coerce") - pd.to_numeric(
                    ref.loc[seeds, m], errors="coerce"
                )
                mean, sd, lo, hi, n = t_interval(diff.tolist())
                rows.append(
                    {
                        "data": data,
                        "model": model,
                        "variant": variant,
                        "metric": m,
                        "n": n,
                        "mean": mean,
                        "sd": sd,
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
    return pd.DataFrame(rows, columns=[*GROUP, "metric", "n", "mean", "sd", "ci_low", "ci_high"])


def ablation_section(table: pd.DataFrame, opts: ReportOptions) -> str:
    """Paired differences (variant - reference, same seed) with 95% t intervals, and the
    multi-task vs single-task verdicts."""
    diffs = paired_differences(table, opts.reference)
    if diffs.empty:
        return ""
    text = [
        f"## Ablation: paired differences vs `{opts.reference}`",
        "",
        "Variant minus reference on the same seed; mean [95% t confidence interval], n seeds. "
        "`*`: the interval excludes 0.",
        "",
    ]
    metrics = list(dict.fromkeys(diffs["metric"]))
    for (data, model), sub in diffs.groupby(["data", "model"], sort=False):
        rows = []
        for variant, vsub in sub.groupby("variant", sort=False):
            cells = []
            for m in metrics:
                hit = vsub[vsub["metric"] == m]
                cells.append(_diff_cell(hit.iloc[0]) if not hit.empty else "-")
            rows.append([variant, str(int(vsub["n"].max())), *cells])
        text += [
            f"### {data} / {model}",
            "",
            markdown_table(["variant", "n", *[LABELS.get(m, m) for m in metrics]], rows),
            "",
        ]
    if opts.single_task_variants:
        text += [_single_task_section(diffs, opts), ""]
    return "\n".join(text)


def _diff_cell(r: pd.Series) -> str:
    if not np.isfinite(r["mean"]):
        return "-"
    if not np.isfinite(r["ci_low"]):
        return fmt_signed(r["mean"])
    star = "*" if r["ci_low"] > 0 or r["ci_high"] < 0 else ""
    return f"{r['mean']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]{star}"


def _single_task_section(diffs: pd.DataFrame, opts: ReportOptions) -> str:
    rows = []
    for (data, model), sub in diffs.groupby(["data", "model"], sort=False):
        for variant in opts.single_task_variants:
            cells, better, worse = [], [], []
            for m in ("ari", "r2_cross"):
                hit = sub[(sub["variant"] == variant) & (sub["metric"] == m)]
                if hit.empty or not np.isfinite(hit.iloc[0]["mean"]):
                    cells.append("-")
                    continue
                r = hit.iloc[0]  # variant - reference; the multi-task margin is its negative
                lo, hi = -r["ci_high"], -r["ci_low"]
                cells.append(
                    f"{-r['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                    if np.isfinite(lo)
                    else fmt_signed(-r["mean"])
                )
                better += [m] if np.isfinite(lo) and lo > 0 else []
                worse += [m] if np.isfinite(hi) and hi < 0 else []
            if "-" in cells:
                verdict = "not measured"
            elif len(better) == 2:
                verdict = "yes: better on both"
            elif worse:
                verdict = "no: single task better on " + ", ".join(LABELS[m] for m in worse)
            else:
                verdict = "not shown (an interval includes 0)"
            rows.append([data, model, variant, *cells, verdict])
    if not rows:
        return ""
    header = [
        "data",
        "model",
        "single task",
        f"ARI: {opts.reference} - it",
        f"R2: {opts.reference} - it",
        "multi-task beats it on both?",
    ]
    return "\n".join(
        [
            f"### Does multi-task (`{opts.reference}`) beat each single task on both ARI and R2?",
            "",
            markdown_table(header, rows),
            "",
            "Margins are reference minus single task on the same seed, mean [95% t interval]; "
            "'yes' needs both intervals above 0.",
        ]
    )
