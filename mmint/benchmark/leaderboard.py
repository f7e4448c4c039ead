"""The leaderboard across datasets: scaled overall score per model and dataset, its mean and
spread over datasets, the rank per dataset and the mean rank.

Rows are *entries* (a model, or model/variant when a model runs several variants), columns
*tasks* (a dataset, or dataset/variant when the variants change the data or the split, as the
held-out batches of a transfer suite do). A model that did not run on a task is marked, never
dropped: its mean is over the tasks it has, and the table says how many.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmint.benchmark.scaled import Scoring, scale_runs

NOT_RUN = "not run"
FAILED = "failed"
Key = tuple[str, str, int]


def run_key(r: pd.Series) -> Key:
    """``(data, variant, seed)`` of a ``results.csv`` row."""
    return str(r["data"]), str(r["variant"]), int(r["seed"])


def task_variants(table: pd.DataFrame, controls: Mapping[Key, dict]) -> set[tuple[str, str]]:
    """``(data, variant)`` pairs whose variant is part of the task: a dataset whose variants
    were scored on different data or splits (different control fingerprints)."""
    seen: dict[str, dict[str, set[str]]] = {}
    for _, r in table.iterrows():
        c = controls.get(run_key(r))
        if c is not None:
            seen.setdefault(str(r["data"]), {}).setdefault(str(r["variant"]), set()).add(
                str(c.get("split_config"))
            )
    out = set()
    for data, variants in seen.items():
        if len({s for splits in variants.values() for s in splits}) > 1:
            out |= {(data, v) for v in variants}
    return out


def label_runs(table: pd.DataFrame, tasks: set[tuple[str, str]]) -> pd.DataFrame:
    """``table`` with ``entry`` and ``task`` columns."""
    out = table.copy()
    is_task = [(str(d), str(v)) in tasks for d, v in zip(out["data"], out["variant"], strict=True)]
    out["task"] = [
        f"{d}/{v}" if t else str(d)
        for d, v, t in zip(out["data"], out["variant"], is_task, strict=True)
    ]
    model_variants = out[~np.array(is_task, dtype=bool)].groupby("model")["variant"].nunique()
    out["entry"] = [
        f"{m}/{v}" if not t and model_variants.get(m, 1) > 1 else str(m)
        for m, v, t in zip(out["model"], out["variant"], is_task, strict=True)
    ]
    return out


def control_frames(
    table: pd.DataFrame, controls: Mapping[Key, dict]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The random and control values aligned with ``table``'s rows, and notes on rows whose
    recorded split sizes differ from the controls' (those rows get no controls)."""
    random, control, notes = [], [], []
    for idx, r in table.iterrows():
        c = controls.get(run_key(r))
        if c is not None and (why := split_mismatch(r, c)):
            notes.append(f"{r['model']} on {r['data']} seed {r['seed']}: {why}")
            c = None
        random.append(pd.Series(c["random"] if c else {}, name=idx, dtype=float))
        control.append(pd.Series(c["control"] if c else {}, name=idx, dtype=float))
    return pd.DataFrame(random, index=table.index), pd.DataFrame(control, index=table.index), notes


def split_mismatch(row: pd.Series, controls: dict) -> str:
    """Why a run's recorded split (``split.n_train`` ...) is not the controls' ('' if same)."""
    diffs = []
    for key, n in (controls.get("split") or {}).items():
        col = f"split.{key}"
        if col in row and pd.notna(row[col]) and int(row[col]) != int(n):
            diffs.append(f"{key} {int(row[col])} in the run, {int(n)} in the controls")
    return ("the controls' split differs (" + ", ".join(diffs) + ")") if diffs else ""


@dataclass
class Scored:
    """The ok runs with entry, task and their scaled scores; every run (failed ones too)
    with entry and task; notes on runs left unscaled."""

    runs: pd.DataFrame
    all_runs: pd.DataFrame
    notes: list[str]


def score_runs(table: pd.DataFrame, controls: Mapping[Key, dict], scoring: Scoring) -> Scored:
    """Scale every ok run of ``table`` with its controls."""
    labelled = label_runs(table, task_variants(table, controls))
    ok = labelled[labelled["status"] == "ok"] if "status" in labelled else labelled
    random, control, notes = control_frames(ok, controls)
    runs = pd.concat([ok, scale_runs(ok, random, control, scoring, ok["task"])], axis=1)
    return Scored(runs, labelled, notes)


def per_task(runs: pd.DataFrame, column: str = "overall") -> pd.DataFrame:
    """Entries x tasks: the mean of ``column`` over seeds."""
    return runs.pivot_table(index="entry", columns="task", values=column, aggfunc="mean")


def leaderboard(
    runs: pd.DataFrame, all_runs: pd.DataFrame | None = None, column: str = "overall"
) -> pd.DataFrame:
    """Per entry: ``mean`` and ``sd`` of the per-task means over tasks, ``n_tasks``, the rank
    on each task (``rank.<task>``, 1 = best, ties averaged, among the entries on it), the
    ``mean_rank`` and the per-task values (``score.<task>``); sorted by ``mean``. Entries of
    ``all_runs`` (every run, failed included) without a value on a task get ``status.<task>``
    ``failed`` or ``not run``."""
    wide = per_task(runs, column)
    tasks = list(dict.fromkeys(runs["task"]))
    entries = list(wide.index)
    if all_runs is not None:
        entries += [e for e in dict.fromkeys(all_runs["entry"]) if e not in entries]
    wide = wide.reindex(index=entries, columns=tasks)
    ranks = wide.rank(axis=0, ascending=False, method="average")
    out = pd.DataFrame(index=wide.index)
    out["mean"] = wide.mean(axis=1)
    out["sd"] = wide.std(axis=1, ddof=1)
    out["n_tasks"] = wide.notna().sum(axis=1)
    out["mean_rank"] = ranks.mean(axis=1)
    out["mean_rank_sd"] = ranks.std(axis=1, ddof=1)
    for t in tasks:
        out[f"score.{t}"] = wide[t]
        out[f"rank.{t}"] = ranks[t]
        out[f"status.{t}"] = np.where(wide[t].notna(), "ok", NOT_RUN)
    if all_runs is not None and "status" in all_runs:
        failed = all_runs[all_runs["status"] == "failed"]
        for _, r in failed.iterrows():
            e, t = r.get("entry"), r.get("task")
            if e in out.index and t in tasks and out.loc[e, f"status.{t}"] != "ok":
                out.loc[e, f"status.{t}"] = FAILED
    out.attrs["tasks"] = tasks
    return out.sort_values(["mean", "mean_rank"], ascending=[False, True], kind="stable")
