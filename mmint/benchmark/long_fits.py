"""The one-seed rule for long fits (``suite.one_seed_above_s``).

A study that ranks models on real-size data gives each model its seeds; a model whose single fit
costs more than the suite's limit keeps the seeds it has and runs no more (the issue's rule: one
seed, and the report says so with its time). The cost of a fit is its CPU time, which a loaded
machine does not inflate as it does wall time: CPU seconds per epoch times the epochs trained
(a resumed fit counts all of them), or the wall ``fit_seconds`` of a model that does not train in
epochs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmint.io import read_json


def fit_cost_seconds(metrics: Mapping[str, Any]) -> float | None:
    """CPU seconds of a finished fit (``cpu_seconds_per_epoch * epochs``), else its
    ``fit_seconds``; ``None`` when neither is recorded."""
    per_epoch, epochs = metrics.get("cpu_seconds_per_epoch"), metrics.get("epochs")
    if per_epoch and epochs:
        return float(per_epoch) * int(epochs)
    seconds = metrics.get("fit_seconds")
    return float(seconds) if seconds else None


def long_fit_note(
    seed: int, others: Mapping[int, Path], limit_s: float | None, what: str
) -> str | None:
    """Why the run of ``seed`` is not run, or ``None`` when it should run.

    Parameters
    ----------
    seed
        The run's seed.
    others
        ``{seed: run folder}`` of the other seeds of the same model, data and variant.
    limit_s
        ``suite.one_seed_above_s`` (``None``: no limit).
    what
        ``<model> on <data>`` (and variant), for the note.
    """
    if limit_s is None:
        return None
    for other, folder in sorted(others.items()):
        path = Path(folder) / "metrics.json"
        if other == seed or not path.exists():
            continue
        metrics = read_json(path)
        cost = fit_cost_seconds(metrics) if metrics.get("status") == "ok" else None
        if cost is not None and cost > limit_s:
            return (
                f"{what}: seed {seed} not run; seed {other}'s fit took {cost / 60:.0f} min of "
                f"CPU, over suite.one_seed_above_s ({limit_s / 60:.0f} min)"
            )
    return None
