"""``mmint.benchmark``: ``mmint benchmark`` from Python, returning ``results.csv``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mmint.api.inputs import data_choice, data_overrides, relabel, to_overrides
from mmint.errors import InputError


def _suite_config(
    data: Any,
    models: Sequence[str] | None,
    seeds: Sequence[int] | None,
    variants: Mapping[str, Any] | None,
    floor: Sequence[str] | None,
    name: str | None,
) -> tuple[dict[str, Any], bool]:
    """The suite node and whether ``data`` is data (not a suite name)."""
    from mmint.api.fitting import compose_config
    from mmint.benchmark.grid import suite_names

    if isinstance(data, str) and data in suite_names():
        suite = dict(compose_config([f"suite={data}"], "benchmark")["suite"])
        is_data = False
    else:
        choice = data_choice(data)
        suite = {"name": name or choice, "datasets": [choice], "umap": False}
        suite["models"] = ["unitednet", "multivi", "cvqvae"]
        suite["seeds"] = [0]
        is_data = True
    for key, value in (("models", models), ("seeds", seeds), ("variants", variants)):
        if value is not None:
            suite[key] = list(value) if key != "variants" else dict(value)
    if floor is not None:
        suite["floor"] = list(floor)
    if name is not None:
        suite["name"] = name
    return suite, is_data


def benchmark(
    data: Any = "quick",
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    out: str | Path | None = None,
    *,
    variants: Mapping[str, Any] | None = None,
    floor: Sequence[str] | None = None,
    name: str | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Run a suite of fits as ``mmint benchmark`` does; return its ``results.csv``.

    Resumable: a run whose ``metrics.json`` matches its config is not fitted again. A failed
    run is a ``failed`` row, not an exception. The suite folder also gets ``report.md``
    (leaderboard first), ``plots/`` and ``leaderboard.csv`` (:func:`mmint.pl.leaderboard`).
    Progress is a rich bar (in a notebook too), one line per run when ``CI=true``.

    Parameters
    ----------
    data
        A suite name (``mmint/conf/suite``: ``quick``, ``real``, ...), or the data to compare
        the models on: a dataset name or in-memory data as for :func:`mmint.fit` (written to
        ``<out>/input/``; the runs' dataset is then ``custom``).
    models
        The models (default: the suite's, or ``unitednet``, ``multivi``, ``cvqvae`` for
        data). The floor (``pca``) is added unless ``floor=[]``.
    seeds
        The seeds (default: the suite's, or ``[0]``).
    out
        The suite folder; default ``runs/benchmark/<suite name>`` as on the command line.
    variants
        ``{name: {dotted.key: value}}`` configurations of the models (e.g. an ablation).
    floor
        Models run once per dataset and seed as the floor (default ``["pca"]``).
    name
        The suite's name (default: the suite's, or the dataset's).
    **overrides
        Overrides every run gets, as for :func:`mmint.fit` (``model__max_epochs=20``,
        ``logger="csv"``, ``eval__scib=False``).

    Returns
    -------
    pandas.DataFrame
        ``results.csv``: one row per run (flattened ``metrics.json``, ``status``, ``error``,
        ``run_dir`` relative to the suite folder); ``attrs['suite_dir']`` is the folder.

    Raises
    ------
    mmint.errors.InputError
        An unknown suite, dataset, model or key, with the command line's one line.
    """
    from mmint.api.fitting import compose_config
    from mmint.benchmark.cli import run_benchmark
    from mmint.benchmark.grid import Suite
    from mmint.benchmark.results import read_results
    from mmint.cli import compose_run

    suite_cfg, is_data = _suite_config(data, models, seeds, variants, floor, name)
    for model in [*suite_cfg.get("models", []), *(suite_cfg.get("floor") or [])]:
        compose_config([f"model={model}"])  # an unknown model: the command line's line
    base = to_overrides(overrides)
    cfg = compose_config(base, "benchmark")  # an unknown key: the command line's line
    suite_dir = Path(out) if out is not None else Path("runs/benchmark") / str(suite_cfg["name"])
    if is_data and not isinstance(data, str):
        folder = suite_dir / "input"
        try:
            data_ov = data_overrides(data, folder)[1:]  # after the grid's data=custom
            compose_config(["data=custom", *data_ov, *base])
        except InputError as err:
            raise relabel(err, folder) from None
        suite_cfg["data_overrides"] = {"custom": data_ov}
    elif is_data and data.endswith((".h5mu", ".h5ad")):
        suite_cfg["data_overrides"] = {"custom": data_overrides(data, suite_dir)[1:]}
    suite = Suite.from_config(suite_cfg)
    done = run_benchmark(
        suite,
        suite_dir,
        base,
        logger_kind=(cfg.get("logger") or {}).get("kind", "csv"),
        project=(cfg.get("logger") or {}).get("project", "mmint"),
        compose=compose_run,
    )
    table = read_results(suite_dir / "results.csv") if len(done.table) else done.table.copy()
    table.attrs["suite_dir"] = str(suite_dir)
    return table
