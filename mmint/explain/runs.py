"""Explaining a run directory: load the model and its data exactly as fitted, write tables.

:func:`load_run` rebuilds the data module from the run's ``config.yaml`` (as
``mmint.fit.build_datamodule`` does) with the fitted transforms restored from the checkpoint
and checks the split against ``split.json``; :func:`explain_run` writes ``<run>/explain/``:

- ``group_relevance.csv`` (``group, modality, feature, relevance, rank``; models with a group
  head) and ``group_composition.csv`` (labels and classes of each model group);
- ``feature_relevance.csv`` (``group, src, dst, src_feature, dst_feature, relevance, rank``);
- ``explainers.csv`` (which shap explainer each sub-network used, sizes, additivity error);
- ``summary.json`` (options, model, groups, explainer counts) and ``plots/*.png``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmint.errors import InputError
from mmint.explain.relevance import (
    RECORD_COLUMNS,
    feature_relevance,
    group_composition,
    group_relevance,
    make_groups,
)
from mmint.explain.subnets import group_network
from mmint.io import atomic_write, write_json
from mmint.rundir import load_saved_run

#: options of ``mmint explain`` (``explain.<key>=...``) and their defaults
DEFAULTS: dict[str, Any] = {
    "out": None,  # output folder; default <run>/explain
    "checkpoint": "best",  # checkpoints/<name>.ckpt explained: best | last
    "groups": "auto",  # feature relevance groups: auto | model | label | class | all | <obs column>
    "only_groups": None,  # explain only these group names
    "pairs": None,  # ["src:dst", ...]; default every ordered pair of distinct modalities
    "cells": "all",  # cells explained: all | train | val | test
    "n_explain": 50,  # cells explained per group (sampled)
    "n_background": 100,  # background cells (train / group backgrounds)
    "group_background": "prototypes",  # prototypes | train | group
    "feature_background": "group",  # group | prototypes | train
    "n_dst_features": 10,  # dst features explained per (group, pair): the most variable
    "dst_features": None,  # {modality: [names]} always explained as dst
    "src_features": None,  # {modality: [names]} always written as src
    "top_src": 50,  # src features written per dst feature (null: all)
    "explainer": "auto",  # auto | deep | gradient
    "nsamples": 50,  # GradientExplainer samples per cell
    "batch_size": None,  # GradientExplainer gradient batch (null: nsamples)
    "min_cells": 5,  # groups with fewer cells are skipped
    "batch_code": 0,  # batch decoded as, for decoders with a batch covariate
    "group_relevance": True,
    "feature_relevance": True,
    "plots": True,
    "top_k": 10,  # features per modality in the group plots
    "seed": 0,
}


def options(given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``DEFAULTS`` updated with ``given``; unknown keys are an input error."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise InputError(
            f"unknown explain option(s) {unknown}", "explain.*", f"use keys of {sorted(DEFAULTS)}"
        )
    return {**DEFAULTS, **given}


def load_run(run_dir: str | Path, checkpoint: str = "best") -> tuple[dict[str, Any], Any, Any]:
    """``(config, model, data module)`` of a run directory written by ``mmint fit``.

    ``checkpoint`` names the file in ``checkpoints/`` (``best``, the model ``mmint fit``
    selected, or ``last``).

    The data module is built from ``config.yaml`` as in :func:`mmint.fit.build_datamodule`,
    with the checkpoint's fitted transforms; its split must match ``split.json``.
    """
    from mmint.fit import build_datamodule

    saved = load_saved_run(run_dir, checkpoint, "explain")
    cfg, model, dm_state, run = saved.config, saved.model, saved.datamodule_state, saved.path
    dm = build_datamodule(cfg, int(cfg["model"].get("batch_size", 128)), dm_state)
    _check_split(dm, run / "split.json", dm_state)
    return cfg, model, dm


def _check_split(dm: Any, path: Path, state: Mapping[str, Any] | None) -> None:
    saved = None
    if path.exists():
        names = json.loads(path.read_text())
        lookup = {str(c): i for i, c in enumerate(dm.data.names)}
        try:
            saved = {
                s: np.array([lookup[c] for c in names[s]], dtype=np.int64)
                for s in ("train", "val", "test")
                if s in names
            }
        except KeyError as err:
            raise InputError(
                f"cell {err} of split.json is not in the dataset",
                str(path),
                "explain the run with the data it was fitted on",
            ) from None
    elif state and "split" in state:
        saved = {s: np.asarray(v) for s, v in state["split"].items()}
    if saved is None:
        return
    for s, idx in saved.items():
        if not np.array_equal(np.sort(idx), np.sort(dm.split[s])):
            raise InputError(
                f"the rebuilt '{s}' split differs from the run's",
                str(path),
                "explain the run with the data and config it was fitted with",
            )


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    atomic_write(path, table.to_csv(index=False))


def explain_run(run_dir: str | Path, opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Explain a run directory; write ``<run>/explain/`` (or ``opts['out']``); return the
    summary (also written as ``summary.json``)."""
    o = options(opts)
    start = time.perf_counter()
    cfg, model, dm = load_run(run_dir, o["checkpoint"])
    out = Path(o["out"]) if o["out"] else Path(run_dir) / "explain"
    out.mkdir(parents=True, exist_ok=True)
    sizes = {k: o[k] for k in ("n_explain", "n_background", "nsamples", "batch_size")}
    common = dict(
        cells=o["cells"], explainer=o["explainer"], min_cells=o["min_cells"], seed=o["seed"]
    )
    records: list[dict[str, Any]] = []
    written: list[str] = []
    group_table = feature_table = None
    has_groups = group_network(model) is not None
    model_grouping = make_groups(model, dm, "model") if has_groups else None
    if o["group_relevance"] and model_grouping is not None:
        group_table, recs = group_relevance(
            model,
            dm,
            model_grouping,
            background=o["group_background"],
            only_groups=o["only_groups"] if o["groups"] in ("auto", "model") else None,
            **sizes,
            **common,
        )
        records += recs
        _write_csv(out / "group_relevance.csv", group_table)
        written.append("group_relevance.csv")
    groups = (
        model_grouping
        if o["groups"] in ("auto", "model") and model_grouping is not None
        else make_groups(model, dm, o["groups"])
    )
    composition = group_composition(groups, dm)
    if not composition.empty:
        _write_csv(out / "group_composition.csv", composition)
        written.append("group_composition.csv")
    if o["feature_relevance"]:
        feature_table, recs = feature_relevance(
            model,
            dm,
            groups,
            pairs=o["pairs"],
            background=o["feature_background"],
            n_dst_features=o["n_dst_features"],
            dst_features=o["dst_features"],
            src_features=o["src_features"],
            top_src=o["top_src"],
            only_groups=o["only_groups"],
            batch_code=o["batch_code"],
            **sizes,
            **common,
        )
        records += recs
        _write_csv(out / "feature_relevance.csv", feature_table)
        written.append("feature_relevance.csv")
    _write_csv(out / "explainers.csv", pd.DataFrame(records, columns=RECORD_COLUMNS))
    written.append("explainers.csv")
    if o["plots"]:
        from mmint.explain.plots import plot_all

        paths = plot_all(group_table, feature_table, out / "plots", o["top_k"])
        written += [str(p.relative_to(out)) for p in paths]
    used = pd.Series([r["explainer"] for r in records]).value_counts().to_dict()
    summary = {
        "run": str(run_dir),
        "model": model.name,
        "data": cfg["data"]["name"],
        "checkpoint": o["checkpoint"],
        "groups": groups.source,
        "n_groups": len(groups.names),
        "explainers": {str(k): int(v) for k, v in used.items()},
        "options": o,
        "files": written,
        "seconds": time.perf_counter() - start,
    }
    write_json(out / "summary.json", summary)
    return summary
