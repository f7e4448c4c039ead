"""Whether a suite may reuse a finished run: its reuse key (:mod:`mmint.reuse`) recomputed
with the current code and data."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmint.config import plain
from mmint.io import read_json
from mmint.reuse import data_fingerprint, diff, key_of, model_hparams


def built_hparams(cfg: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters the current code builds ``cfg``'s model with for the data spec
    ``spec``, as :func:`mmint.fit._setup` does."""
    from mmint.fit import _split_model_config
    from mmint.models import build_model, model_class

    name, max_epochs, _, hp = _split_model_config(plain(cfg["model"]))
    if max_epochs is not None and "max_epochs" in inspect.signature(model_class(name)).parameters:
        hp["max_epochs"] = int(max_epochs)
    return model_hparams(build_model(name, dict(spec), **hp))


class ReuseCheck:
    """Whether finished runs may be reused; loads each dataset once (by its data config)."""

    def __init__(self) -> None:
        self._fingerprints: dict[str, dict[str, Any]] = {}

    def fingerprint(self, data_cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The fingerprint of the data ``data_cfg`` loads now."""
        from mmint.data import load_dataset

        key = json.dumps(plain(data_cfg), sort_keys=True, default=str)
        if key not in self._fingerprints:
            self._fingerprints[key] = data_fingerprint(load_dataset(plain(data_cfg)))
        return self._fingerprints[key]

    def state(self, run_dir: Path, cfg: Mapping[str, Any]) -> tuple[str, str]:
        """``(state, why)`` of the run in ``run_dir`` for ``cfg``: ``none`` (no successful
        ``metrics.json`` of this config), ``match`` (its key matches), ``legacy`` (written
        before mmint recorded a key: matched by config hash only) or ``stale`` (the model's
        hyper-parameters or the data changed; ``why`` says which)."""
        from mmint.fit import config_hash

        try:
            info = read_json(run_dir / "metrics.json")
        except (OSError, ValueError):
            return "none", ""
        chash = config_hash(cfg)
        if info.get("config_hash") != chash or info.get("status", "ok") != "ok":
            return "none", ""
        reuse = info.get("reuse")
        if not isinstance(reuse, dict) or "key" not in reuse:
            return "legacy", "no reuse key (made before mmint recorded one)"
        try:
            fp = self.fingerprint(cfg["data"])
            hp = built_hparams(cfg, reuse["spec"])
        except Exception as err:  # noqa: BLE001 - cannot tell: treat as changed
            return "stale", f"cannot rebuild its model or data ({type(err).__name__}: {err})"
        if key_of(chash, hp, fp["hash"]) == reuse["key"]:
            return "match", ""
        why = []
        if hp != reuse.get("model_hparams"):
            why.append(f"model defaults changed: {diff(reuse.get('model_hparams') or {}, hp)}")
        if fp["hash"] != (reuse.get("data") or {}).get("hash"):
            why.append("the input data changed")
        return "stale", "; ".join(why) or "reuse key changed"
