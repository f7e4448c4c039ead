"""``report.md`` from ``results.csv``: means +/- sd over seeds, ranks, the distance to the pca
floor and, for ablations, paired differences across seeds with 95% t confidence intervals."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: headline metrics, in report order (ARI first), with whether higher is better
HEADLINE: dict[str, bool] = {
    "ari": True,
    "ari_kmeans": True,
    "nmi": True,
    "r2_cross": True,
    "foscttm": False,
    "latent_distance": False,
    "scib.bio_conservation": True,
    "scib.batch_correction": True,
    "scib.total": True,
    "fit_seconds": False,
}
LABELS = {
    "ari": "ARI",
    "ari_kmeans": "ARI (KMeans)",
    "nmi": "NMI",
    "r2_cross": "cross-modal R2",
    "foscttm": "FOSCTTM",
    "latent_distance": "latent distance",
    "scib.bio_conservation": "scIB bio",
    "scib.batch_correction": "scIB batch",
    "scib.total": "scIB total",
    "fit_seconds": "fit s",
    "ari_class": "ARI (class)",
    "n_groups": "groups",
    "transfer_accuracy": "transfer acc.",
    "transfer_macro_f1": "transfer macro-F1",
}
#: metrics shown after the headline ones when a run has them
EXTRA = ["ari_class", "transfer_accuracy", "transfer_macro_f1"]
NA = "n/a"
#: metrics that enter the mean rank (quality, not cost); scIB batch is already in scIB total
RANKED = [m for m in HEADLINE if m not in ("fit_seconds", "scib.batch_correction")]
#: the individual scIB metrics of the per-dataset scIB table (``scib.metrics.<name>``)
SCIB_BIO = ("isolated_labels", "kmeans_nmi", "kmeans_ari", "silhouette_label", "clisi_knn")
SCIB_BATCH = ("bras", "ilisi_knn", "kbet_per_label", "graph_connectivity", "pcr_comparison")
#: metrics of the paired (ablation) comparisons
PAIRED = ["ari", "r2_cross", "ari_kmeans", "nmi", "foscttm", "latent_distance", "scib.total"]
GROUP = ["data", "model", "variant"]
_R2 = re.compile(r"^r2\.([^.]+)\.([^.]+)$")

CLASS_NOTE = (
    "Class-level scores (`ari_class`) map each group to a fine label by Hungarian matching on "
    "the training cells, replace it by that label's class, and score against the class on the "
    "test cells: the cluster->class map is fitted on training cells only."
)


@dataclass
class ReportOptions:
    """What the report needs from the suite."""

    name: str = "suite"
    reference: str = "default"
    floor: Sequence[str] = ("pca",)
    single_task_variants: Sequence[str] = ()
    notes: list[str] = field(default_factory=list)
    description: str = ""


def with_derived(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``r2_cross``: the mean of the off-diagonal ``r2.<src>.<dst>`` entries of a row."""
    table = table.copy()
    cols = [c for c in table.columns if (m := _R2.match(c)) and m.group(1) != m.group(2)]
    if cols:
        table["r2_cross"] = (
            table[cols].apply(pd.to_numeric, errors="coerce").mean(axis=1, skipna=True)
        )
    elif "r2_cross" not in table:
        table["r2_cross"] = np.nan
    return table


def ok_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of finished runs, with ``r2_cross``."""
    if "status" in table:
        table = table[table["status"] == "ok"]
    return with_derived(table)


def metrics_present(table: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The metrics with at least one value in ``table``."""
    return [
        m for m in metrics if m in table and pd.to_numeric(table[m], errors="coerce").notna().any()
    ]


def aggregate(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and sd (ddof 1) over seeds per dataset/model/variant: columns ``<metric>_mean``,
    ``<metric>_sd`` and ``n`` (runs)."""
    ok = ok_rows(table)
    metrics = metrics_present(ok, list(metrics or [*HEADLINE, *EXTRA, "n_groups"]))
    if ok.empty:
        return pd.DataFrame(columns=[*GROUP, "n"])
    values = ok[GROUP + metrics].copy()
    for m in metrics:
        values[m] = pd.to_numeric(values[m], errors="coerce")
    grouped = values.groupby(GROUP, sort=False)
    out = grouped.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = grouped[m].mean()
        out[f"{m}_sd"] = grouped[m].std(ddof=1)
        # the metric does not apply to the model (metrics.json not_applicable)
        na = ok[na_column(m)].fillna("").astype(str) != "" if na_column(m) in ok else None
        out[f"{m}_na"] = (
            na.groupby([ok[g] for g in GROUP], sort=False).any() if na is not None else False
        )
    return out.reset_index()


def na_column(metric: str) -> str:
    """The ``results.csv`` column holding why ``metric`` does not apply (``r2_cross`` -> r2's,
    ``scib.total`` -> scib's)."""
    key = "r2" if metric == "r2_cross" else metric.split(".")[0]
    return f"not_applicable.{key}"


def cell(r: pd.Series, metric: str, digits: int = 3) -> str:
    """``mean ± sd`` of a metric in an aggregated row, ``n/a`` where it does not apply."""
    mean = r.get(f"{metric}_mean")
    if (mean is None or not np.isfinite(mean)) and bool(r.get(f"{metric}_na", False)):
        return NA
    return fmt_pm(mean, r.get(f"{metric}_sd"), digits)


def not_applicable_notes(table: pd.DataFrame) -> list[str]:
    """One note per model and reason: which metrics do not apply to it and why."""
    ok = ok_rows(table)
    cols = [c for c in ok.columns if c.startswith("not_applicable.")]
    reasons: dict[tuple[str, str], list[str]] = {}
    for _, r in ok.drop_duplicates("model").iterrows():
        for c in cols:
            if isinstance(r[c], str) and r[c]:
                reasons.setdefault((r["model"], r[c]), []).append(c.split(".", 1)[1])
    return [
        f"`{NA}` for `{model}`: {', '.join(metrics)}: {why}."
        for (model, why), metrics in reasons.items()
    ]


def ranks(agg: pd.DataFrame, metrics: Sequence[str] = RANKED) -> pd.Series:
    """Per dataset: each model/variant's mean rank over ``metrics`` (1 = best), ranked again."""
    out = pd.Series(np.nan, index=agg.index)
    for _, sub in agg.groupby("data", sort=False):
        per = []
        for m in metrics:
            col = f"{m}_mean"
            if col in sub and sub[col].notna().any():
                per.append(sub[col].rank(ascending=not HEADLINE.get(m, True), method="average"))
        if per:
            out[sub.index] = pd.concat(per, axis=1).mean(axis=1).rank(method="min")
    return out


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


def fmt(value: float, digits: int = 3) -> str:
    """A number, or ``-`` for missing."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_pm(mean: float, sd: float, digits: int = 3) -> str:
    """``mean ± sd`` (``mean`` alone with one seed)."""
    if mean is None or not np.isfinite(mean):
        return "-"
    if sd is None or not np.isfinite(sd):
        return fmt(mean, digits)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def fmt_signed(value: float, digits: int = 3) -> str:
    """``+0.123`` / ``-0.045``."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table of preformatted cells (pandas' ``to_markdown``, cells kept as
    written: no re-parsing of numbers)."""
    table = pd.DataFrame([[str(c) for c in r] for r in rows], columns=list(header))
    return table.to_markdown(index=False, disable_numparse=True)


def _digits(metric: str) -> int:
    return 1 if metric == "fit_seconds" else 3


def _floor_row(agg: pd.DataFrame, data: str, floor: Sequence[str]) -> pd.Series | None:
    for name in floor:
        hit = agg[(agg["data"] == data) & (agg["model"] == name)]
        if not hit.empty:
            return hit.iloc[0]
    return None


def summary_table(table: pd.DataFrame, floor: Sequence[str] = ("pca",)) -> str:
    """The short table ``make demo`` prints: per dataset and model/variant, ARI, cross-modal
    R2, FOSCTTM, ARI above the floor and the rank (mean over seeds)."""
    agg = aggregate(table)
    if agg.empty:
        return "(no finished runs)"
    agg["rank"] = ranks(agg)
    agg = agg.sort_values(
        ["data", "ari_mean" if "ari_mean" in agg else "n"], ascending=[True, False], kind="stable"
    )
    rows = []
    for _, r in agg.iterrows():
        fl = _floor_row(agg, r["data"], floor)
        above = (
            r.get("ari_mean", np.nan) - fl.get("ari_mean", np.nan)
            if fl is not None and r["model"] not in floor
            else np.nan
        )
        rows.append(
            [
                r["data"],
                r["model"],
                r["variant"],
                cell(r, "ari"),
                cell(r, "r2_cross"),
                cell(r, "foscttm"),
                fmt_signed(above),
                fmt(r["rank"], 0),
                str(int(r["n"])),
            ]
        )
    header = [
        "data",
        "model",
        "variant",
        "ARI",
        "cross-modal R2",
        "FOSCTTM",
        f"ARI - {floor[0] if floor else 'floor'}",
        "rank",
        "seeds",
    ]
    return markdown_table(header, rows)


def dataset_section(agg: pd.DataFrame, data: str, floor: Sequence[str]) -> str:
    """Means ± sd, ranks and the distance to the floor for one dataset."""
    sub = agg[agg["data"] == data].copy()
    sub = sub.sort_values("ari_mean" if "ari_mean" in sub else "n", ascending=False, kind="stable")
    metrics = [
        m for m in [*HEADLINE, *EXTRA] if f"{m}_mean" in sub and sub[f"{m}_mean"].notna().any()
    ]
    fl = _floor_row(agg, data, floor)
    header = ["model", "variant", *[LABELS.get(m, m) for m in metrics], "groups", "rank"]
    floor_name = floor[0] if floor else None
    if fl is not None:
        header += [f"ARI - {fl['model']}", f"R2 - {fl['model']}"]
    rows = []
    for _, r in sub.iterrows():
        row = [r["model"], r["variant"]]
        row += [cell(r, m, _digits(m)) for m in metrics]
        ng = r.get("n_groups_mean", np.nan)
        row += [
            fmt(ng, 1) if np.isfinite(ng) and ng != round(ng) else fmt(ng, 0),
            fmt(r["rank"], 0),
        ]
        if fl is not None:
            is_floor = r["model"] in floor
            for m in ("ari", "r2_cross"):
                diff = r.get(f"{m}_mean", np.nan) - fl.get(f"{m}_mean", np.nan)
                row.append("(floor)" if is_floor else fmt_signed(diff))
        rows.append(row)
    text = [f"## {data}", "", markdown_table(header, rows), ""]
    text.append(
        "Mean ± sd over seeds (scored on test cells). Rank: mean rank over "
        f"{', '.join(LABELS[m] for m in RANKED if f'{m}_mean' in sub)} (1 = best; FOSCTTM and "
        "latent distance lower is better). `groups`: the number of groups the model used "
        "(`n_groups`)." + (f" The floor is `{floor_name}`." if fl is not None else "")
    )
    return "\n".join(text)


def scib_section(table: pd.DataFrame, data: str) -> str:
    """The scIB table of one dataset with several batches: bio conservation, batch correction
    and total with each metric behind them (mean ± sd over seeds), and which cells were
    scored when the scIB metrics ran on a subsample (``scib.subsample``)."""
    sub = table[table["data"] == data]
    names = [f"scib.metrics.{m}" for m in (*SCIB_BIO, *SCIB_BATCH)]
    aggregates = ["scib.bio_conservation", "scib.batch_correction", "scib.total"]
    agg = aggregate(sub, [*aggregates, *names])
    if agg.empty or "scib.batch_correction_mean" not in agg:
        return ""
    metrics = [m for m in [*aggregates, *names] if f"{m}_mean" in agg]
    header = ["model", "variant", *[LABELS.get(m, m.rsplit(".", 1)[-1]) for m in metrics]]
    rows = [[r["model"], r["variant"], *[cell(r, m) for m in metrics]] for _, r in agg.iterrows()]
    text = [
        f"### {data}: scIB bio conservation and batch correction",
        "",
        markdown_table(header, rows),
        "",
        "Mean ± sd over seeds, test cells, scib-metrics without min-max scaling; higher is "
        "better for every column. Bio: "
        + ", ".join(m for m in SCIB_BIO if f"scib.metrics.{m}_mean" in agg)
        + "; batch: "
        + ", ".join(m for m in SCIB_BATCH if f"scib.metrics.{m}_mean" in agg)
        + "; total = 0.6 bio + 0.4 batch.",
    ]
    note = _subsample_note(ok_rows(sub))
    return "\n".join([*text, *([note] if note else [])])


def _subsample_note(ok: pd.DataFrame) -> str:
    """Which cells the scIB metrics saw when some runs scored a subsample."""
    n, total = "scib.subsample.n_cells", "scib.subsample.n_cells_total"
    if n not in ok or total not in ok:
        return ""
    counts = ok[[n, total]].apply(pd.to_numeric, errors="coerce").dropna()
    sampled = counts[counts[n] < counts[total]]
    if sampled.empty:
        return ""
    how = ok.loc[sampled.index, "scib.subsample.how"].dropna().astype(str)
    return (
        f"The scIB metrics of {len(sampled)} of {len(counts)} runs scored a subsample of "
        f"{int(sampled[n].min())}-{int(sampled[n].max())} of "
        f"{int(sampled[total].min())}-{int(sampled[total].max())} test cells "
        f"(`eval.scib_max_cells`; {how.iloc[0] if len(how) else 'see metrics.json'}; the "
        "seed is each run's seed)."
    )


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


def _run_name(r: pd.Series) -> str:
    return f"{r['model']}__{r['data']}__{r['variant']}__seed{r['seed']}"


def flagged_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Successful runs whose ``metrics.json`` carries ``warnings`` (collapse, R2 far below 0)."""
    if "warnings" not in table or table.empty:
        return table.iloc[0:0]
    text = table["warnings"].fillna("").astype(str).str.strip()
    ok = table["status"] == "ok" if "status" in table else True
    return table[ok & (text != "")]


def build_report(table: pd.DataFrame, opts: ReportOptions) -> str:
    """The whole ``report.md``."""
    n_ok = int((table["status"] == "ok").sum()) if "status" in table else len(table)
    n_failed = int((table["status"] == "failed").sum()) if "status" in table else 0
    flagged = flagged_rows(table)
    agg = aggregate(table)
    if not agg.empty:
        agg["rank"] = ranks(agg)
    text = [f"# Benchmark `{opts.name}`", ""]
    if opts.description:
        text += [opts.description.strip(), ""]
    text += [
        "## Summary",
        "",
        summary_table(table, opts.floor),
        "",
        f"Runs: {n_ok} ok"
        + (f" ({len(flagged)} flagged, see Flagged runs)" if len(flagged) else "")
        + f", {n_failed} failed. Means ± sd over seeds; ARI leads. "
        f"ARI - {opts.floor[0] if opts.floor else 'floor'}: how far the model is above "
        "the floor (difference of means).",
        "",
    ]
    notes = [
        *opts.notes,
        *not_applicable_notes(table),
        CLASS_NOTE,
        "`n_groups` is the number of groups each model actually used (its own group head, "
        "else KMeans with K = the number of distinct labels among the scored cells).",
    ]
    text += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    for data in dict.fromkeys(agg["data"]) if not agg.empty else []:
        text += [dataset_section(agg, data, opts.floor), ""]
        scib = scib_section(table, data)
        text += [scib, ""] if scib else []
    if "variant" in table and table["variant"].nunique() > 1:
        text += [ablation_section(table, opts)]
    if len(flagged):
        text += [
            "## Flagged runs",
            "",
            "These runs finished with finite numbers but show signs of a collapsed fit; their "
            "scores are in the tables above and should not be read as normal results.",
            "",
            markdown_table(
                ["run", "warning"],
                [
                    [_run_name(r), str(r["warnings"]).replace("|", "\\|")]
                    for _, r in flagged.iterrows()
                ],
            ),
            "",
        ]
    if n_failed:
        failed = table[table["status"] == "failed"]
        text += [
            "## Failed runs",
            "",
            markdown_table(
                ["run", "error"],
                [[_run_name(r), str(r["error"]).replace("|", "\\|")] for _, r in failed.iterrows()],
            ),
            "",
        ]
    return "\n".join(text).rstrip() + "\n"
