"""``results.csv``: one row per finished run, metrics.json flattened with dots."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mmint.io import atomic_write, read_json

ID_COLUMNS = ["model", "data", "seed", "variant"]
TAIL_COLUMNS = ["status", "error", "run_dir"]
#: the files a finished run leaves in its folder
OUTCOMES = ("metrics.json", "failed.json")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"r2": {"rna": {"atac": 0.1}}}`` -> ``{"r2.rna.atac": 0.1}``; empty dicts vanish."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = ";".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def run_row(run: Any, run_dir: Path, relative_to: Path | None = None) -> dict[str, Any] | None:
    """The row of one run (a :class:`~mmint.benchmark.grid.RunSpec`) from its folder:
    ``metrics.json`` (its ``status``) or ``failed.json`` (failed); None when it has not
    finished."""
    ident = {"model": run.model, "data": run.data, "seed": run.seed, "variant": run.variant}
    shown = str(run_dir.relative_to(relative_to)) if relative_to else str(run_dir)
    metrics, failed = run_dir / "metrics.json", run_dir / "failed.json"
    if failed.exists() and (
        not metrics.exists() or failed.stat().st_mtime >= metrics.stat().st_mtime
    ):
        info = read_json(failed)
        return {**ident, "status": "failed", "error": info.get("error", ""), "run_dir": shown}
    if metrics.exists():
        info = read_json(metrics)
        if info.get("status") == "failed":  # written by the fit itself (e.g. a divergence)
            return {**ident, "status": "failed", "error": info.get("error") or "", "run_dir": shown}
        reuse = info.get("reuse") if isinstance(info.get("reuse"), dict) else {}
        kept = {k: v for k, v in info.items() if k not in [*ID_COLUMNS, *TAIL_COLUMNS, "reuse"]}
        flat = flatten(kept)
        flat["reuse.key"] = reuse.get("key")  # its parts stay in metrics.json
        return {**ident, **flat, "status": "ok", "error": "", "run_dir": shown}
    return None


def results_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows -> a table with the identity columns first and status/error/run_dir last."""
    table = pd.DataFrame(list(rows))
    if table.empty:
        return pd.DataFrame(columns=ID_COLUMNS + TAIL_COLUMNS)
    middle = [c for c in table.columns if c not in ID_COLUMNS + TAIL_COLUMNS]
    return table[ID_COLUMNS + middle + TAIL_COLUMNS]


def write_results(table: pd.DataFrame, path: str | Path) -> None:
    """Atomically write ``results.csv``."""
    atomic_write(path, table.to_csv(index=False))


def read_results(path: str | Path | io.StringIO) -> pd.DataFrame:
    """Read ``results.csv`` (empty error cells as empty strings)."""
    table = pd.read_csv(path)
    if "error" in table:
        table["error"] = table["error"].fillna("")
    return table


def folder_results(folder: str | Path) -> pd.DataFrame:
    """The table of every run in a suite folder's ``runs/`` that left an outcome, built from
    each run's ``metrics.json`` / ``failed.json`` as the suite builds ``results.csv``,
    whichever suite invocation fitted it."""
    from types import SimpleNamespace

    folder, rows = Path(folder), []
    for run_dir in sorted(p for p in (folder / "runs").iterdir() if p.is_dir()):
        found = [run_dir / f for f in OUTCOMES if (run_dir / f).exists()]
        if not found:
            continue
        info = read_json(found[0])
        ident = SimpleNamespace(**{k: info.get(k) for k in ID_COLUMNS})
        if (row := run_row(ident, run_dir, folder)) is not None:
            rows.append(row)
    # through CSV text, so that its values read as results.csv's do (e.g. empty cells)
    return read_results(io.StringIO(results_table(rows).to_csv(index=False)))


def rows_outside(folder: str | Path, run_dirs: Iterable[str]) -> list[dict[str, Any]]:
    """Rows of :func:`folder_results` for the runs outside ``run_dirs`` (``run_dir`` values):
    a suite narrowed to some models or datasets keeps the folder's other runs in its table."""
    if not (Path(folder) / "runs").is_dir():
        return []
    table, inside = folder_results(folder), set(run_dirs)
    return [row.dropna().to_dict() for _, row in table.iterrows() if row["run_dir"] not in inside]


def _named(runs: pd.DataFrame, limit: int = 6) -> str:
    names = [Path(str(r)).name for r in runs["run_dir"]]
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def provenance_notes(table: pd.DataFrame) -> list[str]:
    """Report notes on how the successful runs were made: reused although stale
    (``key: stale``), matched by config hash only (``key: legacy``), or under different
    mmint versions / commits (recorded, not part of the reuse key)."""
    ok = table[table["status"] == "ok"] if "status" in table else table
    notes = []
    if "key" in ok:
        stale, legacy = ok[ok["key"] == "stale"], ok[ok["key"] == "legacy"]
        if len(stale):
            notes.append(
                f"{len(stale)} run(s) reused although their model's hyper-parameters or input "
                f"data changed since they ran (suite.reuse=stale_ok; `key: stale`): "
                f"{_named(stale)}"
            )
        if len(legacy):
            notes.append(
                f"{len(legacy)} run(s) made before mmint recorded a reuse key, reused by "
                f"config hash only (`key: legacy`): {_named(legacy)}"
            )
    for col, what in (("versions.mmint", "mmint versions"), ("versions.mmint_commit", "commits")):
        if col in ok and ok[col].nunique(dropna=False) > 1:
            groups = ok.groupby(ok[col].fillna("unknown").astype(str), sort=True)
            parts = "; ".join(f"{value}: {_named(g, 3)}" for value, g in groups)
            notes.append(f"runs made under different {what} ({parts})")
    return notes
