"""Can a dataset's test set separate the models? The detectable ARI difference of each
dataset (:mod:`mmint.benchmark.detectable`) from the runs' own cells or their surrogates, as
a report section."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.benchmark import detectable as det
from mmint.benchmark.leaderboard import Key
from mmint.benchmark.tables import fmt, markdown_table


def cells_for_task(
    runs: pd.DataFrame,
    controls: Mapping[Key, dict],
    run_dir_of: Callable[[pd.Series], Path | None],
    shared_errors: bool = False,
) -> tuple[list[det.SeedCells], dict[str, float], str]:
    """Each seed's labelled test cells with every entry's groups (per-cell when every run's
    folder has them, else surrogates: with ``shared_errors`` every model's relabelled cells
    are drawn in the same order, so errors are nested, else independently), and each entry's
    mean ARI."""
    observed = runs.groupby("entry")["ari"].mean().dropna().to_dict()
    seeds, how = [], "per-cell"
    per_seed = list(runs.groupby("seed"))
    real: dict[tuple[int, str], np.ndarray] = {}
    for seed, sub in per_seed:
        for _, r in sub.iterrows():
            c = controls.get((str(r["data"]), str(r["variant"]), int(seed)))
            folder = run_dir_of(r)
            if c is None or folder is None:
                continue
            labels = np.asarray(c["test_labels"])
            try:
                g = det.run_groups(folder, str(r["model"]), int(seed), labels)
            except Exception:  # noqa: BLE001 - unreadable outputs: the surrogate stands in
                g = None
            if g is not None:
                real[(int(seed), str(r["entry"]))] = g
    if len(real) < sum(len(s) for _, s in per_seed):
        how = "surrogate"
    for seed, sub in per_seed:
        c = next(
            (
                controls.get((str(r["data"]), str(r["variant"]), int(seed)))
                for _, r in sub.iterrows()
            ),
            None,
        )
        if c is None:
            continue
        labels = np.asarray(c["test_labels"])
        lab = labels[labels >= 0]
        groups = {}
        for _, r in sub.iterrows():
            e = str(r["entry"])
            if not np.isfinite(pd.to_numeric(r.get("ari"), errors="coerce")):
                continue
            if how == "per-cell":
                groups[e] = real[(int(seed), e)]
            else:
                # one stream per seed (nested errors) or per (seed, model) (independent)
                stream = (int(seed), 0 if shared_errors else zlib.crc32(e.encode()))
                groups[e] = det.surrogate_groups(lab, float(r["ari"]), seed=stream)
        seeds.append(det.SeedCells(det._codes(lab), groups))
    return seeds, observed, how


def _control_gap(runs: pd.DataFrame, controls: Mapping[Key, dict]) -> float:
    """The smallest gap over seeds between the label control's and the random control's ARI."""
    gaps = []
    for key in {
        (str(d), str(v), int(s))
        for d, v, s in zip(runs["data"], runs["variant"], runs["seed"], strict=True)
    }:
        c = controls.get(key)
        if c is not None and "ari" in c["control"] and "ari" in c["random"]:
            gaps.append(abs(c["control"]["ari"] - c["random"]["ari"]))
    return min(gaps) if gaps else float("nan")


def _verdict(high: det.Detectable, low: det.Detectable) -> str:
    """The verdict from the conservative (``high``) and optimistic (``low``) detectable
    differences (the same object for per-cell data)."""
    if high.degenerate:
        return f"**ARI cannot rank the models here** ({high.degenerate})"
    if low.too_small:
        return "**too small to separate the models**"
    return (
        "borderline: separates most pairs only if errors overlap"
        if high.too_small
        else ("separates most pairs")
    )


def detectable_section(
    runs: pd.DataFrame,
    controls: Mapping[Key, dict],
    run_dir_of: Callable[[pd.Series], Path | None],
    n_boot: int = 500,
    alpha: float = 0.05,
    power: float = 0.8,
    min_gap: float = 0.01,
) -> tuple[str, dict[str, det.Detectable]]:
    """Per dataset (task) of the scored ``runs``: the smallest ARI difference its seeds and
    test cells can detect, and whether that separates the models (never where the random and
    label controls' ARI are less than ``min_gap`` apart on a seed: ARI cannot rank there)."""
    found: dict[str, det.Detectable] = {}
    rows, verdicts = [], {}
    for task, sub in runs.groupby("task", sort=False):
        if "ari" not in sub or sub["entry"].nunique() < 2:
            continue
        seeds, observed, how = cells_for_task(sub, controls, run_dir_of)
        if not seeds or len(observed) < 2:
            continue
        kw = dict(n_boot=n_boot, alpha=alpha, power=power, how=how)
        d = det.detectable_difference(seeds, observed, **kw)
        # surrogates cannot know how far two models' errors overlap: independent errors
        # (above, conservative) and nested errors (below, optimistic) bound the answer
        low = (
            det.detectable_difference(
                cells_for_task(sub, controls, run_dir_of, True)[0], observed, **kw
            )
            if how == "surrogate"
            else d
        )
        gap = _control_gap(sub, controls)
        if gap < min_gap:
            d.degenerate = low.degenerate = (
                f"the random and label controls' ARI differ by {gap:.3f}"
            )
        found[str(task)] = d
        verdicts[str(task)] = verdict = _verdict(d, low)
        n_test = sorted({int(s.labels.size) for s in seeds})
        spread = max(observed.values()) - min(observed.values())
        rows.append(
            [
                str(task),
                f"{n_test[0]}-{n_test[-1]}" if len(n_test) > 1 else str(n_test[0]),
                str(len(seeds)),
                fmt(d.mdd) if low is d else "-".join(fmt(v) for v in sorted([low.mdd, d.mdd])),
                fmt(spread),
                f"{d.n_resolved}/{d.n_pairs}"
                if low is d
                else "-".join(str(v) for v in sorted({d.n_resolved, low.n_resolved}))
                + f"/{d.n_pairs}",
                verdict,
                how,
            ]
        )
    if not rows:
        return "", found
    lines = []
    for label, key in (
        ("Test sets too small to separate the models", "too small"),
        ("Borderline (too small if the models' errors are independent)", "borderline"),
        ("ARI cannot rank the models on", "cannot rank"),
    ):
        hits = [f"`{t}`" for t, v in verdicts.items() if key in v]
        lines += [f"{label}: {', '.join(hits)}."] if hits else []
    summary = " ".join(lines) or "Every dataset's test set separates most model pairs."
    header = [
        "dataset",
        "labelled test cells",
        "seeds",
        "detectable ARI difference",
        "ARI range (best - worst)",
        "pairs separated",
        "verdict",
        "cells",
    ]
    text = [
        "### Can the test sets separate the models?",
        "",
        summary,
        "",
        markdown_table(header, rows),
        "",
        f"Detectable ARI difference: the median over model pairs of (z_{{1-alpha/2}} + "
        f"z_power) x SE of the pair's mean ARI difference (alpha {alpha:g}, power "
        f"{power:g}), SE from a paired bootstrap over seeds and test cells "
        f"({n_boot} replicates). Pairs separated: pairs whose mean ARI differs by more "
        "than their own detectable difference; too small: fewer than half. `cells`: `per-cell` = "
        "the runs' own groups (outputs.h5mu); `surrogate` = the runs' folders are not kept, each "
        "run's cells are simulated from the true test labels at its recorded ARI, and the two "
        "numbers bound the answer: errors nested between models (the smaller detectable "
        "difference, more pairs separated) or independent (the larger); borderline: too small "
        "only with independent errors (see docs/benchmark.md).",
    ]
    return "\n".join(text), found
