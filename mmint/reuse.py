"""What decides a run, recorded in its ``metrics.json`` (``reuse``) so that a suite reuses a
finished run only when it would come out the same.

The reuse key covers the config hash (the YAML values), the hyper-parameters the model was
built with (code defaults and values resolved from the data included: the model's recorded
``hparams``) and a fingerprint of the input data (shapes, cell and feature names, labels and
batches, a checksum of a sample of rows). mmint's version and commit are recorded beside it
(``versions``) but are not part of it: a commit that changes no model reruns nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mmint.config import plain

#: rows of each modality whose values enter the fingerprint (evenly spaced)
SAMPLE_ROWS = 64


def _sha(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()[:16]


def data_fingerprint(data: Any) -> dict[str, Any]:
    """Shapes, names, labels, batches and a checksum of :data:`SAMPLE_ROWS` evenly spaced rows
    per modality of a :class:`~mmint.data.PairedData`; ``hash`` sums them up."""
    labels, label_names = data.labels()
    batches, batch_names = data.batches()
    out: dict[str, Any] = {
        "n_cells": int(data.n_cells),
        "cells": _sha([str(n) for n in data.names]),
        "labels": _sha(label_names, labels.astype(np.int64).tobytes()),
        "batches": _sha(batch_names, batches.astype(np.int64).tobytes()),
        "modalities": {},
    }
    for m, mod in data.modalities.items():
        n = mod.x.shape[0]
        rows = np.unique(np.linspace(0, n - 1, min(SAMPLE_ROWS, n)).astype(np.int64))
        block = mod.x[rows] if n else np.zeros((0, mod.x.shape[1]))
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        out["modalities"][m] = {
            "kind": mod.kind,
            "shape": [int(s) for s in mod.x.shape],
            "features": _sha([str(v) for v in mod.var_names]),
            "present": _sha(np.asarray(mod.present, dtype=bool).tobytes()),
            "sample": _sha(np.ascontiguousarray(block, dtype=np.float64).tobytes()),
        }
    out["hash"] = _sha(out)
    return out


def model_hparams(model: Any) -> dict[str, Any]:
    """The hyper-parameters a model was built with (its recorded ``hparams``, the data spec
    left out: the fingerprint covers the data)."""
    hp = plain(dict(getattr(model, "hparams", {}) or {}))
    hp.pop("spec", None)
    return json.loads(json.dumps(hp, default=str))  # as metrics.json will hold them


def key_of(config_hash: str, hparams: Mapping[str, Any], fingerprint: str) -> str:
    """The reuse key."""
    return _sha(config_hash, dict(hparams), fingerprint)


def record(config_hash: str, model: Any, dm: Any) -> dict[str, Any]:
    """``metrics.json``'s ``reuse`` for a run of config hash ``config_hash``: the key and what
    it is made of, plus the data spec the model was built for (so that a resume rebuilds the
    model without the data, :mod:`mmint.benchmark.reuse_check`)."""
    hp = model_hparams(model)
    fp = data_fingerprint(dm.data)
    return {
        "key": key_of(config_hash, hp, fp["hash"]),
        "model_hparams": hp,
        "data": fp,
        "spec": model.spec.to_dict(),
    }


def diff(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> str:
    """``a 1 -> 2, b ...``: the keys whose values differ."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    shown = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@functools.cache
def git_commit() -> str | None:
    """The commit of the mmint checkout this code runs from (``-dirty`` with uncommitted
    changes to tracked files); None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "mmint"],
            capture_output=True,
            timeout=10,
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")
