"""``report.md`` from ``results.csv``: means +/- sd over seeds, ranks, the distance to the pca
floor and, for ablations, paired differences across seeds with 95% t confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmint.benchmark.ablation import (  # noqa: F401 - re-exported: the report's public names
    PAIRED,
    ablation_section,
    paired_differences,
    t_interval,
)
from mmint.benchmark.aggregate import (  # noqa: F401 - re-exported
    EXTRA,
    GROUP,
    HEADLINE,
    LABELS,
    RANKED,
    aggregate,
    cell,
    metrics_present,
    na_column,
    not_applicable_notes,
    ok_rows,
    ranks,
    with_derived,
)
from mmint.benchmark.tables import (  # noqa: F401 - re-exported
    NA,
    fmt,
    fmt_pm,
    fmt_signed,
    markdown_table,
)

#: the individual scIB metrics of the per-dataset scIB table (``scib.metrics.<name>``)
SCIB_BIO = ("isolated_labels", "kmeans_nmi", "kmeans_ari", "silhouette_label", "clisi_knn")
SCIB_BATCH = ("bras", "ilisi_knn", "kbet_per_label", "graph_connectivity", "pcr_comparison")

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
    #: the leaderboard section (:func:`mmint.benchmark.board.build_board`), first in the report
    leaderboard: str = ""


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


def _run_name(r: pd.Series) -> str:
    return f"{r['model']}__{r['data']}__{r['variant']}__seed{r['seed']}"


def flagged_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Successful runs whose ``metrics.json`` carries ``warnings`` (collapse, R2 far below 0)."""
    if "warnings" not in table or table.empty:
        return table.iloc[0:0]
    text = table["warnings"].fillna("").astype(str).str.strip()
    ok = table["status"] == "ok" if "status" in table else True
    return table[ok & (text != "")]


def time_line(table: pd.DataFrame) -> str:
    """Training against evaluation time (``fit_seconds``, ``eval_seconds``) summed over the
    finished runs that recorded both; empty when none did."""
    need = {"fit_seconds", "eval_seconds"}
    if not need <= set(table):
        return ""
    ok = table[table["status"] == "ok"] if "status" in table else table
    fit = pd.to_numeric(ok["fit_seconds"], errors="coerce")
    ev = pd.to_numeric(ok["eval_seconds"], errors="coerce")
    both = fit.notna() & ev.notna()
    if not both.any():
        return ""
    f, e = float(fit[both].sum()), float(ev[both].sum())
    share = f"{100 * e / f:.0f}% of fit" if f > 0 else "fit 0 s"
    return (
        f"Time: fit {f:,.0f} s, evaluation (test scores and outputs) {e:,.0f} s ({share}) over "
        f"the {int(both.sum())} finished run(s) that recorded both (wall seconds)."
    )


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
    if opts.leaderboard:
        text += [opts.leaderboard.strip(), ""]
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
    cost = time_line(table)
    text += [cost, ""] if cost else []
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
