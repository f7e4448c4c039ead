"""The ``suite-summary`` W&B run: ``results.csv`` as a ``wandb.Table`` and the plots as
``wandb.Image``, in the suite's W&B group, written under ``<suite dir>/wandb/`` (offline
unless ``WANDB_MODE`` or an API key says otherwise; ``WANDB_MODE=disabled`` skips it).

Upload an offline run later with ``wandb sync <suite dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.loggers import wandb_mode


def log_suite_summary(
    table: pd.DataFrame,
    suite_dir: str | Path,
    suite_name: str,
    plots: Sequence[Path] = (),
    project: str = "mmint",
    summary: dict[str, float] | None = None,
    leaderboard: pd.DataFrame | None = None,
) -> Path | None:
    """Log the suite summary run (with ``leaderboard``, the leaderboard as a second table);
    return its run folder (None when W&B is disabled)."""
    mode = wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    suite_dir = Path(suite_dir)
    suite_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        group=suite_name,
        name="suite-summary",
        job_type="suite-summary",
        tags=[f"suite:{suite_name}"],
        dir=str(suite_dir),
        mode=mode,
        config={"suite": suite_name, "n_runs": int(len(table))},
        reinit="finish_previous",
    )
    try:
        payload: dict = {"results": _table(wandb, table)}
        if leaderboard is not None and not leaderboard.empty:
            payload["leaderboard"] = _table(wandb, leaderboard.reset_index(names="model"))
        for path in plots:
            payload[f"plots/{Path(path).stem}"] = wandb.Image(str(path))
        run.log(payload)
        for key, value in (summary or {}).items():
            run.summary[key] = value
        folder = Path(run.dir).parent
    finally:
        run.finish()
    return folder


def _table(wandb, table: pd.DataFrame):
    """A ``wandb.Table`` of a DataFrame (NaN as None, numpy scalars as Python's)."""
    clean = table.astype(object).where(pd.notna(table), None)
    columns = [str(c) for c in clean.columns]
    rows = [[_cell(v) for v in row] for row in clean.itertuples(index=False)]
    return wandb.Table(columns=columns, data=rows, allow_mixed_types=True)


def _cell(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
