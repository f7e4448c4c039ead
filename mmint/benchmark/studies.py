"""Study sections of a suite's report: ``scale``, ``speed`` and ``parity``.

Set in the suite's YAML under ``suite.sections`` (each optional)::

    sections:
      scale: {metrics: [process.cpu_seconds, cpu_seconds_per_epoch, process.peak_rss_mb]}
      speed: {pairs: [[unitednet, unitednet_original]], metrics: [process.cpu_seconds]}
      parity: {pairs: [[multivi, scvi_multivi]], metrics: [ari, r2_cross, foscttm]}

- **scale**: per model and dataset family (a generated row's prefix, see
  :mod:`mmint.benchmark.generated`), each metric against the number of cells (train + val +
  test of the run's split) and the growth exponent ``b`` of ``value ~ cells^b``, the slope of
  the least-squares line through ``(log cells, log value)`` (seeds averaged per size first).
- **speed**: each run's cost (of ``models``: a list, or ``all``; default: the pairs' models),
  then per pair ``[a, b]`` and row (dataset, variant, seed) both ran: ``a / b`` of each
  metric, and the geometric mean of the ratios per dataset. A side may be ``model/variant``
  (two variants of one model, e.g. ``[wnn/mmint, wnn/muon]``): rows pair by dataset and seed.
- **parity**: per pair ``[a, b]``: the paired differences ``a - b`` of the same dataset and
  seed, mean and 95% t interval, through :func:`mmint.benchmark.report.paired_differences`.

Each section is appended to ``report.md`` and written as ``<section>.csv`` in the suite folder.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmint.benchmark.aggregate import ok_rows
from mmint.benchmark.tables import fmt, fmt_signed, markdown_table
from mmint.errors import InputError
from mmint.io import atomic_write

SECTIONS = ("scale", "speed", "parity")
SCALE_METRICS = ["process.cpu_seconds", "cpu_seconds_per_epoch", "process.peak_rss_mb"]
SPEED_METRICS = ["cpu_seconds_per_epoch", "process.cpu_seconds", "fit_seconds"]
PARITY_METRICS = ["ari", "nmi", "ari_kmeans", "r2_cross", "foscttm", "scib.total"]
_SIZE = re.compile(r"^(.*)_(\d+)cells$")


def check_sections(sections: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The suite's ``sections`` node as plain dicts; an unknown section is an InputError."""
    out = {str(k): dict(v or {}) for k, v in (sections or {}).items()}
    if unknown := sorted(set(out) - set(SECTIONS)):
        raise InputError(
            f"unknown report section(s) {', '.join(unknown)}",
            "suite.sections",
            f"use {', '.join(SECTIONS)}",
        )
    for name in ("speed", "parity"):
        for pair in out.get(name, {}).get("pairs", []):
            if len(pair) != 2:
                raise InputError(
                    f"a {name} pair needs two models, got {pair}",
                    f"suite.sections.{name}.pairs",
                    "give [[model_a, model_b], ...]",
                )
    return out


def growth_exponent(cells: Sequence[float], values: Sequence[float]) -> float:
    """Slope ``b`` of ``log(value) = a + b log(cells)`` by least squares (NaN with fewer than
    two distinct sizes or a non-positive value)."""
    x = np.log(np.asarray(cells, dtype=float))
    y = np.asarray(values, dtype=float)
    if len(np.unique(x)) < 2 or not np.all(y > 0):
        return math.nan
    y = np.log(y)
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def n_cells(table: pd.DataFrame) -> pd.Series:
    """Cells of each run: ``split.n_train + split.n_val + split.n_test``."""
    cols = [c for c in ("split.n_train", "split.n_val", "split.n_test") if c in table]
    if not cols:
        return pd.Series(np.nan, index=table.index)
    return table[cols].apply(pd.to_numeric, errors="coerce").sum(axis=1, min_count=1)


def family(data: str) -> str:
    """A generated row's prefix (``multiome_10000cells`` -> ``multiome``), else the name."""
    m = _SIZE.match(str(data))
    return m.group(1) if m else str(data)


def scale_table(table: pd.DataFrame, metrics: Sequence[str] = SCALE_METRICS) -> pd.DataFrame:
    """Per model, dataset family, variant and size: the seeds' mean of each metric."""
    ok = ok_rows(table).copy()
    ok["n_cells"] = n_cells(ok)
    ok["family"] = ok["data"].map(family)
    metrics = [m for m in metrics if m in ok]
    for m in metrics:
        ok[m] = pd.to_numeric(ok[m], errors="coerce")
    keys = ["model", "family", "variant", "n_cells"]
    return ok.groupby(keys, sort=True)[metrics].mean().reset_index()


def exponents(sizes: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Growth exponent of each metric per model, family and variant."""
    rows = []
    for (model, fam, variant), sub in sizes.groupby(["model", "family", "variant"], sort=True):
        row = {"model": model, "family": fam, "variant": variant, "sizes": len(sub)}
        for m in metrics:
            ok = sub[sub[m].notna()] if m in sub else sub.iloc[:0]
            row[m] = growth_exponent(ok["n_cells"], ok[m]) if len(ok) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def scale_section(table: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[str, pd.DataFrame]:
    """The ``scale`` section's markdown and its table (sizes, then exponents per model)."""
    metrics = list(spec.get("metrics") or SCALE_METRICS)
    sizes = scale_table(table, metrics)
    metrics = [m for m in metrics if m in sizes]
    exps = exponents(sizes, metrics)
    head = ["model", "data", "variant", "cells", *metrics]
    body = [
        [r.model, r.family, r.variant, f"{int(r.n_cells)}", *(fmt(r[m], 2) for m in metrics)]
        for _, r in sizes.iterrows()
    ]
    text = [
        "## Scale",
        "",
        "Seeds' mean per size; cells = train + val + test of the run's split.",
        "",
        markdown_table(head, body),
        "",
        "Growth exponent b of value ~ cells^b (least squares on log-log; 1 = linear):",
        "",
        markdown_table(
            ["model", "data", "variant", "sizes", *metrics],
            [
                [r.model, r.family, r.variant, str(r.sizes), *(fmt(r[m], 2) for m in metrics)]
                for _, r in exps.iterrows()
            ],
        ),
    ]
    out = sizes.assign(kind="size")
    out = pd.concat([out, exps.assign(kind="exponent")], ignore_index=True, sort=False)
    return "\n".join(text), out


def side(ok: pd.DataFrame, ident: str, by_variant: bool) -> pd.DataFrame:
    """The rows of one side of a pair: ``model`` or ``model/variant``, indexed by the row
    keys (``data, variant, seed``; ``data, seed`` when the pair names variants)."""
    model, _, variant = str(ident).partition("/")
    rows = ok[ok["model"] == model]
    if by_variant:
        rows = rows[rows["variant"] == (variant or "default")]
    keys = ["data", "seed"] if by_variant else ["data", "variant", "seed"]
    return rows.drop_duplicates(keys, keep="last").set_index(keys)


def _pair_rows(table: pd.DataFrame, a: str, b: str, metrics: Sequence[str]) -> pd.DataFrame:
    """``a / b`` of each metric on the rows both sides ran (columns: the row keys, the
    metrics)."""
    ok = ok_rows(table)
    by_variant = "/" in a or "/" in b
    left, right = side(ok, a, by_variant), side(ok, b, by_variant)
    both = left.index.intersection(right.index)
    rows = pd.DataFrame(index=both)
    for m in metrics:
        if m in left and m in right:
            x = pd.to_numeric(left.loc[both, m], errors="coerce")
            y = pd.to_numeric(right.loc[both, m], errors="coerce")
            rows[m] = x / y
    rows = rows.reset_index()
    if "variant" not in rows:
        rows.insert(1, "variant", f"{a} / {b}")
    return rows


def run_rows(table: pd.DataFrame, models: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Each finished run of ``models`` (``model`` or ``model/variant``) with its metrics and
    ``n_train``; ``train_cells_per_cpu_second`` = training cells / ``cpu_seconds_per_epoch``."""
    ok = ok_rows(table)
    frames = []
    for ident in dict.fromkeys(models):
        model, _, variant = str(ident).partition("/")
        sub = ok[ok["model"] == model]
        if variant:
            sub = sub[sub["variant"] == variant]
        frames.append(sub)
    rows = pd.concat(frames, ignore_index=True) if frames else ok.iloc[:0]
    keep = ["model", "data", "variant", "seed"]
    out = rows[keep].copy()
    out["n_train"] = pd.to_numeric(rows.get("split.n_train"), errors="coerce")
    for m in metrics:
        if m in rows:
            out[m] = pd.to_numeric(rows[m], errors="coerce")
    if "cpu_seconds_per_epoch" in out:
        out["train_cells_per_cpu_second"] = out["n_train"] / out["cpu_seconds_per_epoch"]
    return out


def speed_section(table: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[str, pd.DataFrame]:
    """The ``speed`` section: each run's cost, then the ratios ``a / b`` on the rows both
    models ran (``speed.csv``: ``kind`` run or ratio)."""
    metrics = list(spec.get("metrics") or SPEED_METRICS)
    pairs = [(str(a), str(b)) for a, b in spec.get("pairs") or []]
    listed = spec.get("models") or [x for pair in pairs for x in pair]
    if listed == "all":
        listed = list(dict.fromkeys(ok_rows(table)["model"].astype(str)))
    runs = run_rows(table, listed, metrics)
    shown = [m for m in [*metrics, "train_cells_per_cpu_second"] if m in runs]
    body = [
        [r.model, r.data, r.variant, str(r.seed), fmt(r.n_train, 0), *(fmt(r[m], 3) for m in shown)]
        for _, r in runs.iterrows()
    ]
    text = ["## Speed", "", "Per run:", ""]
    text += [markdown_table(["model", "data", "variant", "seed", "n_train", *shown], body), ""]
    frames = [runs.assign(kind="run")]
    for a, b in pairs:
        rows = _pair_rows(table, a, b, metrics)
        if rows.empty:  # the suite ran with one side only (e.g. suite.models narrowed)
            continue
        shown = [m for m in metrics if m in rows]
        text += [f"Ratio {a} / {b} on the same rows (< 1: {a} needs less):", ""]
        body = [
            [r.data, r.variant, str(r.seed), *(fmt(r[m], 2) for m in shown)]
            for _, r in rows.iterrows()
        ]
        for data, sub in rows.groupby("data", sort=False):
            gm = [fmt(float(np.exp(np.log(sub[m]).mean())), 2) for m in shown]
            body.append([f"**{data}**", "", "geometric mean", *gm])
        text += [markdown_table(["data", "variant", "seed", *shown], body), ""]
        frames.append(rows.assign(kind="ratio", model=f"{a} / {b}"))
    out = pd.concat(frames, ignore_index=True)
    out = out[["kind", *[c for c in out.columns if c != "kind"]]]
    return "\n".join(text).rstrip(), out


def parity_section(table: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[str, pd.DataFrame]:
    """The ``parity`` section: paired differences ``a - b`` per dataset with 95% intervals."""
    from mmint.benchmark.report import paired_differences

    metrics = list(spec.get("metrics") or PARITY_METRICS)
    text, frames = ["## Parity", ""], []
    ok = ok_rows(table)
    for a, b in spec.get("pairs") or []:
        a, b = str(a), str(b)
        by_variant = "/" in a or "/" in b
        # the pair's two sides become the "variants" of one model: same data and seed pair up
        sides = [side(ok, x, by_variant).reset_index().assign(variant=x) for x in (a, b)]
        sub = pd.concat(sides, ignore_index=True).assign(model=f"{a} - {b}")
        diffs = paired_differences(sub, reference=b, metrics=metrics)
        text += [f"{a} - {b}, same dataset and seed (`*`: the 95% t interval excludes 0):", ""]
        body = [
            [
                r.data,
                r.metric,
                str(int(r.n)),
                fmt_signed(r["mean"], 3) + ("*" if r.ci_low > 0 or r.ci_high < 0 else ""),
                f"[{fmt_signed(r.ci_low, 3)}, {fmt_signed(r.ci_high, 3)}]",
            ]
            for _, r in diffs.iterrows()
        ]
        text += [markdown_table(["data", "metric", "n", "mean", "95% CI"], body), ""]
        frames.append(diffs.drop(columns=["model", "variant"]).assign(a=a, b=b))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return "\n".join(text).rstrip(), out


_BUILD = {"scale": scale_section, "speed": speed_section, "parity": parity_section}


def write_sections(
    table: pd.DataFrame, suite_dir: str | Path, sections: Mapping[str, Any]
) -> list[Path]:
    """Append each configured section to ``report.md`` and write ``<section>.csv``."""
    suite_dir = Path(suite_dir)
    written, parts = [], []
    for name, spec in check_sections(sections).items():
        text, frame = _BUILD[name](table, spec)
        parts.append(text)
        path = suite_dir / f"{name}.csv"
        atomic_write(path, frame.to_csv(index=False))
        written.append(path)
    if parts:
        report = suite_dir / "report.md"
        old = report.read_text() if report.exists() else ""
        atomic_write(report, old.rstrip() + "\n\n" + "\n\n".join(parts) + "\n")
    return written
