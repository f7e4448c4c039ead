"""The one way a model records its hyper-parameters.

Every trainable model saves the :class:`~mmint.data.spec.DataSpec` it is built for (as a
dict) and its constructor arguments, as plain Python values, once in ``__init__`` (a model
that resolves defaults from the data saves the resolved values), so that
``load_from_checkpoint`` rebuilds it without the data.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L

from mmint.config import plain
from mmint.errors import InputError


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    """One-line :class:`~mmint.errors.InputError` for a setting ``model.<key>`` outside
    ``allowed``."""
    if value not in allowed:
        raise InputError(f"unknown {key} '{value}'", f"model.{key}", f"use one of {list(allowed)}")


def constructor_args(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (e.g. ``locals()`` in ``__init__``) that are arguments of
    ``cls.__init__`` other than ``self`` and ``spec``, in signature order."""
    names = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "spec")]
    return {n: values[n] for n in names if n in values}


def record_hparams(model: Any, values: Mapping[str, Any]) -> None:
    """The same for a model fitted outside Lightning (the floors and comparators):
    ``model.hparams`` = its constructor arguments in ``values``, plain (the spec is saved
    beside them by :class:`mmint.models.persist.SavedByAttributes`)."""
    model.hparams = plain(constructor_args(type(model), values))


def save_hparams(model: L.LightningModule, values: Mapping[str, Any]) -> None:
    """``model.save_hyperparameters`` of ``{"spec": model.spec as a dict, **values}`` with
    every value made plain (Hydra containers and tuples as lists, numpy scalars as Python)."""
    model.save_hyperparameters({"spec": model.spec.to_dict(), **plain(dict(values))})
