"""A suite's grid: models x datasets x seeds x variants -> one run (name, overrides) each.

A suite is ``mmint/conf/suite/<name>.yaml`` (the ``suite`` node of the composed config) or a
plain dict with the same keys; see ``docs/benchmark.md``. A run is its overrides: the entry
point (:func:`mmint.cli.compose_run`) composes each into the config ``mmint fit <overrides>``
would get; nothing here composes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mmint.benchmark.generated import split_datasets
from mmint.benchmark.studies import check_sections
from mmint.config import config_dir, plain
from mmint.errors import InputError

#: override keys the grid sets itself; dropped (with a note) from the command line's overrides
GRID_KEYS = ("model", "data", "seed", "variant", "command")

Overrides = list[str]


@dataclass
class Suite:
    """A benchmark suite (the keys of ``mmint/conf/suite/<name>.yaml``'s ``suite`` node)."""

    name: str
    models: list[str]
    datasets: list[str]
    seeds: list[int]
    #: name -> overrides (a list of Hydra overrides or a ``{dotted.key: value}`` mapping)
    variants: dict[str, Any] = field(default_factory=lambda: {"default": []})
    reference: str | None = None
    floor: list[str] = field(default_factory=lambda: ["pca"])
    overrides: Any = field(default_factory=list)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data_overrides: dict[str, Any] = field(default_factory=dict)
    #: model -> {dataset: overrides} for that model's runs on that dataset; the override
    #: ``model=<file>`` there composes from another config file of the group (a preset such
    #: as ``unitednet_patchseq``) while the run keeps the model's name
    model_data_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_jobs: int = 1
    skip_missing_data: bool = True
    umap: bool = True
    single_task_variants: list[str] = field(default_factory=list)
    description: str = ""
    #: model -> {dataset: why} pairs the grid leaves out (a model that cannot take the data)
    skip: dict[str, dict[str, str]] = field(default_factory=dict)
    #: leaderboard options (:class:`mmint.benchmark.board.BoardOptions`: clip, weights, ...)
    leaderboard: dict[str, Any] = field(default_factory=dict)
    #: each run in a fresh process (:mod:`mmint.benchmark.isolate`), capped at ``threads``
    #: threads and killed after ``timeout_s`` seconds
    isolate: bool = False
    threads: int | None = None
    timeout_s: float | None = None
    #: a model whose finished fit took more CPU seconds than this runs no further seeds of
    #: that dataset and variant (:mod:`mmint.benchmark.long_fits`; ``None``: every seed)
    one_seed_above_s: float | None = None
    #: study sections of the report (:mod:`mmint.benchmark.studies`: scale, speed, parity)
    sections: dict[str, Any] = field(default_factory=dict)
    #: a finished run whose reuse key changed (model defaults, data): ``rerun`` it, or
    #: ``stale_ok``: reuse it, marked stale (:mod:`mmint.benchmark.runner`)
    reuse: str = "rerun"

    def __post_init__(self) -> None:
        self.variants = {str(k): to_overrides(v) for k, v in (self.variants or {}).items()}
        if not self.variants:
            self.variants = {"default": []}
        self.overrides = to_overrides(self.overrides)
        self.model_overrides = {str(k): to_overrides(v) for k, v in self.model_overrides.items()}
        self.data_overrides = {str(k): to_overrides(v) for k, v in self.data_overrides.items()}
        self.model_data_overrides = {
            str(m): {str(d): to_overrides(v) for d, v in (per_data or {}).items()}
            for m, per_data in self.model_data_overrides.items()
        }
        for m, per_data in self.model_data_overrides.items():
            for d, ov in per_data.items():
                _check_model_file(ov, f"suite.model_data_overrides.{m}.{d}")
        self.floor = [self.floor] if isinstance(self.floor, str) else list(self.floor)
        if self.reuse not in ("rerun", "stale_ok"):
            raise InputError(
                f"unknown suite.reuse '{self.reuse}'", "suite.reuse", "use rerun or stale_ok"
            )
        if self.reference is None:
            self.reference = next(iter(self.variants))
        if self.reference not in self.variants:
            raise InputError(
                f"reference variant '{self.reference}' is not one of the suite's variants",
                "suite.reference",
                f"use one of: {', '.join(self.variants)}",
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Suite:
        """Build from the composed ``suite`` node (DictConfig or dict)."""
        if not cfg:
            raise InputError(
                "no suite given",
                "mmint benchmark",
                f"pass suite=<name>, one of: {', '.join(suite_names()) or '(none found)'}",
            )
        c = plain(cfg)
        for key in ("name", "models", "datasets", "seeds"):
            if not c.get(key) and c.get(key) != 0:
                raise InputError(f"the suite has no '{key}'", f"suite.{key}", f"set suite.{key}")
        floor = c.get("floor", ["pca"])
        # generated rows (the simulator at given sizes) are datasets whose data overrides
        # select and size the simulator; the suite's own data_overrides still come after
        names, generated = split_datasets(_as_list(c["datasets"]))
        data_overrides = dict(c.get("data_overrides") or {})
        for name, (base, keys) in generated.items():
            own = to_overrides(data_overrides.get(name))
            data_overrides[name] = [f"data={base}", *to_overrides(keys), *own]
        return cls(
            name=str(c["name"]),
            models=[str(m) for m in _as_list(c["models"])],
            datasets=expand_datasets(names),
            seeds=[int(s) for s in _as_list(c["seeds"])],
            variants=c.get("variants") or {},
            reference=c.get("reference"),
            floor=[str(m) for m in _as_list(floor or [])],
            overrides=c.get("overrides"),
            model_overrides=c.get("model_overrides") or {},
            data_overrides=data_overrides,
            model_data_overrides=c.get("model_data_overrides") or {},
            n_jobs=int(c.get("n_jobs") or 1),
            skip_missing_data=bool(c.get("skip_missing_data", True)),
            umap=bool(c.get("umap", True)),
            single_task_variants=[str(v) for v in _as_list(c.get("single_task_variants") or [])],
            description=str(c.get("description") or ""),
            skip={
                str(m): {str(d): str(why) for d, why in (pairs or {}).items()}
                for m, pairs in (c.get("skip") or {}).items()
            },
            leaderboard=dict(c.get("leaderboard") or {}),
            isolate=bool(c.get("isolate", False)),
            threads=int(c["threads"]) if c.get("threads") else None,
            timeout_s=float(c["timeout_s"]) if c.get("timeout_s") else None,
            one_seed_above_s=(float(c["one_seed_above_s"]) if c.get("one_seed_above_s") else None),
            sections=check_sections(c.get("sections")),
            reuse=str(c.get("reuse") or "rerun"),
        )

    def skip_notes(self) -> list[str]:
        """One report note per pair the grid leaves out (``suite.skip``)."""
        return [
            f"not run: `{m}` on `{d}` ({why})"
            for m, pairs in self.skip.items()
            for d, why in pairs.items()
            if d in self.datasets and m in self.all_models
        ]

    @property
    def all_models(self) -> list[str]:
        """``models`` then the floor models not already listed."""
        return list(dict.fromkeys([*self.models, *self.floor]))


@dataclass
class RunSpec:
    """One run of a suite: its identity, name and the overrides that compose its config."""

    model: str
    data: str
    seed: int
    variant: str
    overrides: Overrides

    @property
    def name(self) -> str:
        """``<model>__<data>__<variant>__seed<s>``."""
        return run_name(self.model, self.data, self.variant, self.seed)


def run_name(model: str, data: str, variant: str, seed: int) -> str:
    """The run's folder name under ``<suite dir>/runs/``."""
    return f"{model}__{data}__{variant}__seed{seed}"


def expand(suite: Suite, base_overrides: Iterable[str] = ()) -> list[RunSpec]:
    """All runs of ``suite``, in order datasets -> models -> variants -> seeds.

    A floor model (``suite.floor``, default ``pca``) runs once per dataset and seed with
    variant ``default`` and no variant overrides: the variants are the ablated model's.

    Overrides, later wins per key: the grid's ``model= data= seed= variant=``,
    ``logger.group=<suite>``, the suite's ``overrides``, the ``data_overrides`` of the
    dataset, the ``model_overrides`` of the model, its ``model_data_overrides`` for the
    dataset (where ``model=<file>`` replaces the grid's ``model=<model>``), the variant's, and
    last ``base_overrides`` (the command line's, without the grid's own keys).
    """
    base = [o for o in base_overrides if override_key(o) not in GRID_KEYS]
    runs = []
    for data in suite.datasets:
        for model in suite.all_models:
            if data in suite.skip.get(model, {}):
                continue
            variants = {"default": []} if model in suite.floor else suite.variants
            for variant, var_overrides in variants.items():
                for seed in suite.seeds:
                    ov = [
                        "command=fit",
                        f"model={model}",
                        f"data={data}",
                        f"seed={seed}",
                        f"variant={variant}",
                        f"++logger.group={suite.name}",
                        "++trainer.enable_progress_bar=false",
                        *suite.overrides,
                        *suite.data_overrides.get(data, []),
                        *suite.model_overrides.get(model, []),
                        *suite.model_data_overrides.get(model, {}).get(data, []),
                        *var_overrides,
                        *base,
                    ]
                    runs.append(RunSpec(model, data, int(seed), variant, dedupe(ov)))
    return runs


def override_key(item: str) -> str:
    """The key of a Hydra override (``+a.b=1`` -> ``a.b``)."""
    return item.partition("=")[0].lstrip("+~")


def dedupe(overrides: Iterable[str]) -> list[str]:
    """Keep the last override per key, in the order of their last appearance."""
    last: dict[str, str] = {}
    for item in overrides:
        key = override_key(item)
        last.pop(key, None)
        last[key] = item
    return list(last.values())


def passthrough(overrides: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split the command line's overrides into those every run gets and those dropped
    (``suite``, ``hydra``, and the grid's own keys)."""
    keep, dropped = [], []
    for item in overrides:
        key = override_key(item)
        root = key.split(".")[0].split("/")[0]
        if root in ("suite", "hydra") or key in GRID_KEYS:
            dropped.append(item)
        else:
            keep.append(item)
    return keep, dropped


def to_overrides(value: Any) -> list[str]:
    """Hydra overrides from a list of override strings or a ``{dotted.key: value}`` mapping.

    Mapping entries become ``++key=value`` (set whether or not the key exists in the
    composed config, e.g. a model hyper-parameter its config file leaves to the default).
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [f"++{k}={format_value(v)}" for k, v in value.items()]
    return [str(v) for v in value]


_SIMPLE = re.compile(r"^[A-Za-z0-9_./:-]+$")


def format_value(value: Any) -> str:
    """A Python value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    if _SIMPLE.match(text) and text.lower() not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_model_file(overrides: list[str], where: str) -> None:
    """One-line error for ``model=<file>`` naming no file of ``mmint/conf/model``."""
    for item in overrides:
        if override_key(item) == "model":
            name = item.partition("=")[2]
            if not (config_dir() / "model" / f"{name}.yaml").exists():
                raise InputError(
                    f"unknown model config '{name}'",
                    where,
                    "name a file of mmint/conf/model, without .yaml",
                )


def suite_names() -> list[str]:
    """Names of the suites in ``mmint/conf/suite``."""
    return sorted(p.stem for p in (config_dir() / "suite").glob("*.yaml"))


def check_suite_name(name: str) -> None:
    """Raise the one-line :class:`InputError` for an unknown ``suite=<name>``."""
    if name not in suite_names():
        raise InputError(
            f"unknown suite '{name}'", "suite=", f"use one of: {', '.join(suite_names())}"
        )


def expand_datasets(names: list[Any]) -> list[str]:
    """Dataset names; the entry ``shared`` stands for every dataset with ``source: shared``."""
    from mmint.data.registry import dataset_config, dataset_names

    out: list[str] = []
    for name in names:
        if name == "shared":
            out += [n for n in dataset_names() if dataset_config(n).get("source") == "shared"]
        else:
            out.append(str(name))
    return list(dict.fromkeys(out))


def missing_dataset(name: str) -> str | None:
    """Why a dataset can't be read (a ``shared`` dataset absent under ``$MMINT_DATA_DIR``),
    or None when it can (or is not a shared one)."""
    import os
    from pathlib import Path

    from mmint.data.registry import DATA_DIR_ENV, dataset_config, dataset_names

    if name not in dataset_names():  # a generated row (or a typo: its runs fail on compose)
        return None
    cfg = dataset_config(name)
    if cfg.get("source") != "shared":
        return None
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        return f"${DATA_DIR_ENV} is not set"
    folder = Path(root).expanduser() / name
    if not folder.is_dir():
        return f"not found in {folder}"
    missing = [m for m in (cfg.get("kinds") or {}) if not (folder / f"{m}.h5ad").exists()]
    if missing:
        return f"missing {', '.join(f'{m}.h5ad' for m in missing)} in {folder}"
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | int | float):
        return [value]
    return list(value)
