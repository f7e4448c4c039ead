"""UnitedNet's hyper-parameter choices and how the data-dependent defaults are resolved."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmint.data.spec import DataSpec
from mmint.errors import InputError

TASKS = ("unsupervised", "supervised", "pgc_only", "group_only", "joint")
ALTERNATIONS = ("epoch", "batch")
STAGES = ("train", "finetune", "transfer")
GROUP_MODES = ("classification", "clustering")
SELECTION_LOSSES = ("translation", "reconstruction", "cross_entropy", "ddc")
BATCH_CORRECTIONS = ("none", "covariate", "adversarial")

Hidden = Sequence[int] | Mapping[str, Sequence[int]] | None
PerModality = float | Mapping[str, float]


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    """One-line error for a value outside ``allowed``."""
    if value not in allowed:
        raise InputError(f"unknown {key} '{value}'", f"model.{key}", f"use one of {list(allowed)}")


def default_group_mode(task: str, spec: DataSpec) -> str:
    """``classification`` for supervised tasks (and group_only / joint with labels)."""
    if task == "supervised":
        return "classification"
    if task in ("group_only", "joint") and spec.n_labels > 0:
        return "classification"
    return "clustering"


def resolve_n_groups(n_groups: int | None, task: str, mode: str, spec: DataSpec) -> int:
    """Groups per head: the label count for classification, else given or from the labels."""
    if mode == "classification":
        if spec.n_labels == 0:
            raise InputError(
                f"task={task} classifies cells but the data has no labels",
                "model.task",
                "give the data a label_key, or use task=unsupervised with model.n_groups",
            )
        if n_groups not in (None, spec.n_labels):
            raise InputError(
                f"n_groups={n_groups} but the data has {spec.n_labels} label categories",
                "model.n_groups",
                "leave model.n_groups unset for classification",
            )
        return spec.n_labels
    if n_groups is None:
        counts = spec.train_label_counts
        n_groups = sum(c > 0 for c in counts) if counts else spec.n_labels
    if not n_groups:
        if task == "pgc_only":
            return 2  # heads exist but are not trained in pgc_only
        raise InputError(
            "the number of groups is unknown: the data has no labels",
            "model.n_groups",
            "set model.n_groups=<number of clusters>",
        )
    if n_groups < 2:
        raise InputError(f"n_groups={n_groups}", "model.n_groups", "use at least 2 groups")
    return int(n_groups)


def default_hidden(n_in: int) -> list[int]:
    """``[clip(n/2, 32, 512), clip(n/4, 32, 256)]``."""
    return [min(512, max(32, n_in // 2)), min(256, max(32, n_in // 4))]


def per_modality_widths(
    value: Hidden, mods: list[str], default: Callable[[str], list[int]]
) -> dict[str, list[int]]:
    """Hidden widths per modality from one list, a mapping, or the default."""
    if value is None:
        return {m: list(default(m)) for m in mods}
    if isinstance(value, Mapping):
        return {m: [int(w) for w in value[m]] if m in value else list(default(m)) for m in mods}
    return {m: [int(w) for w in value] for m in mods}


def per_modality_value(value: PerModality | None, mods: list[str]) -> dict[str, float]:
    """A float per modality from one float or a mapping (missing modalities: 0)."""
    if value is None:
        return {m: 0.0 for m in mods}
    if isinstance(value, Mapping):
        return {m: float(value.get(m, 0.0)) for m in mods}
    return {m: float(value) for m in mods}


def is_binary(spec: DataSpec, m: str) -> bool:
    """Whether modality ``m``'s model input is 0/1."""
    transform = spec.transforms.get(m, "binarize" if spec.kinds[m] == "binary" else "none")
    return transform == "binarize" or (spec.kinds[m] == "binary" and transform == "none")


def plain(value: Any) -> Any:
    """Hydra containers -> plain dicts and lists (for clean hyper-parameters)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value
