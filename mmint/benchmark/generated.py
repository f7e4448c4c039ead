"""Per-row data generators: a suite dataset entry that is the simulator at given sizes.

A ``suite.datasets`` entry may be a mapping instead of a dataset name::

    - generate: simulated_multiome      # a data config with source: simulator
      cells: [10000, 30000, 100000]     # one dataset per size
      features: {rna: 2000, atac: 100000}
      sparsity: 0.97                    # fraction of zeros of binary modalities
      name: multiome                    # row names multiome_10000cells, ... (default: generate)
      overrides: {data.simulate.n_types: 8}   # any other data keys

Each size becomes a dataset of the grid named ``<name>_<cells>cells`` whose data overrides
select the base config and set the simulator's size (``data=<generate>``,
``++data.name=<row>``, ``++data.simulate.n_cells=...``, ...). The suite's own
``data_overrides`` of that row name still apply after them. So growth curves are suites.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmint.errors import InputError

KEYS = {"generate", "cells", "features", "sparsity", "name", "overrides"}


def row_name(prefix: str, n_cells: int) -> str:
    """The dataset name of one generated size."""
    return f"{prefix}_{int(n_cells)}cells"


def expand_generated(entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{row name: {dotted data key: value}}`` of one generator entry."""
    from mmint.data.registry import dataset_config, dataset_names

    unknown = set(entry) - KEYS
    if unknown:
        raise InputError(
            f"unknown key(s) {', '.join(sorted(unknown))} in a generated dataset entry",
            "suite.datasets",
            f"use only: {', '.join(sorted(KEYS))}",
        )
    base = str(entry.get("generate") or "")
    if base not in dataset_names() or dataset_config(base).get("source") != "simulator":
        sims = [n for n in dataset_names() if dataset_config(n).get("source") == "simulator"]
        raise InputError(
            f"generated dataset entry needs 'generate: <simulator dataset>', got '{base}'",
            "suite.datasets",
            f"use one of: {', '.join(sims)}",
        )
    cells = entry.get("cells")
    sizes = [cells] if isinstance(cells, int | str) else list(cells or [])
    if not sizes:
        raise InputError(
            f"generated dataset '{base}' has no sizes", "suite.datasets", "set cells: [n, ...]"
        )
    prefix = str(entry.get("name") or base)
    common: dict[str, Any] = {}
    if entry.get("features"):
        common["data.simulate.n_features"] = {str(k): int(v) for k, v in entry["features"].items()}
    if entry.get("sparsity") is not None:
        common["data.simulate.sparsity"] = float(entry["sparsity"])
    common.update({str(k): v for k, v in (entry.get("overrides") or {}).items()})
    out = {}
    for n in sizes:
        name = row_name(prefix, int(n))
        out[name] = {"data.name": name, "data.simulate.n_cells": int(n), **common}
    return {name: {"__base__": base, **keys} for name, keys in out.items()}


def split_datasets(entries: list[Any]) -> tuple[list[Any], dict[str, tuple[str, dict]]]:
    """Dataset entries -> (names, in order, with each generator's rows in place;
    ``{row name: (base data config, {dotted data key: value})}`` of the generated rows)."""
    names: list[Any] = []
    generated: dict[str, tuple[str, dict]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            names.append(entry)
            continue
        for name, keys in expand_generated(entry).items():
            base = keys.pop("__base__")
            names.append(name)
            generated[name] = (base, keys)
    return names, generated
