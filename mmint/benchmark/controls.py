"""Controls per dataset and split: what the scaled scores are measured between.

Two pseudo-models are scored by :func:`mmint.evaluate.evaluate` itself (the metric code every
model goes through), on the test cells of the very split the runs used:

- ``random``: a random Gaussian embedding (the joint latent and, independently, each
  modality's latent) and random predictions drawn per feature from a normal with that
  feature's mean and variance on the training cells (in the target's model-input space); its
  groups are KMeans on the random embedding, as for a model without a group head;
- ``control``: the labels themselves as groups, the one-hot labels as the joint latent and as
  every modality's latent (so the modalities are perfectly aligned), and the training mean of
  each feature as the prediction of every cell (the mean-per-feature predictor).

The random control is the mean of :data:`N_RANDOM` draws. Each dataset/split is computed once
and stored as ``<suite dir>/controls/<dataset>[__<split>]__seed<k>.json`` with the
fingerprint of what it depends on (data config, split, seed, scIB settings); a later report
reuses it while the fingerprint matches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mmint.benchmark.results import flatten
from mmint.evaluate import evaluate
from mmint.io import read_json, write_json
from mmint.metrics.subsample import SCIB_MAX_CELLS
from mmint.models.wholeset import Embedding, WholeSetIntegrator

#: bump when the controls' definition changes: stored controls are then recomputed
CONTROL_VERSION = 1
#: width of the random embedding
RANDOM_DIMS = 16
#: random draws averaged into the random control
N_RANDOM = 3
#: what a stored controls file says it holds
DEFINITION = (
    "Scored by mmint.evaluate.evaluate on the test cells of the runs' split. random: a random "
    f"Gaussian embedding ({RANDOM_DIMS} dimensions; joint latent and each modality's latent "
    "drawn independently; groups by KMeans) and predictions drawn per feature from a normal "
    "with the training cells' mean and variance, the mean of "
    f"{N_RANDOM} draws (random_sd: their sd). control: the labels as groups, the one-hot labels "
    "as the joint latent and as every modality's latent, the training mean of each feature as "
    "the prediction of every cell."
)
#: fingerprinted eval keys (they change what the metric code computes)
_EVAL_KEYS = ("scib", "kbet", "scib_max_cells")


def _train_moments(dm: Any, m: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each feature of ``m``'s model input on the training cells that
    have ``m``."""
    train = dm.cells("train")
    x = dm.inputs[m][train[dm.masks[m][train] > 0]]
    if sp.issparse(x):
        mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
        sq = np.asarray(x.multiply(x).mean(axis=0), dtype=np.float64).ravel()
        return mean, np.maximum(sq - mean**2, 0.0)
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=0), x.var(axis=0)


class ControlModel(WholeSetIntegrator):
    """A pseudo-model on the whole-set interface (:class:`WholeSetIntegrator`) that
    :func:`mmint.evaluate.evaluate` scores like any model; it fits nothing.

    Parameters
    ----------
    kind
        ``"random"`` or ``"control"`` (see the module docstring).
    seed
        Seed of the random draws (``random`` only).
    """

    name = "control"

    def __init__(self, kind: str, seed: int = 0) -> None:
        if kind not in ("random", "control"):
            raise ValueError(f"kind must be 'random' or 'control', got {kind!r}")
        self.kind = kind
        self.seed = seed
        #: the label control's groups are the labels (its transfer reads them as labels)
        self.groups_are_labels = kind == "control"
        self.translates = True
        self._cache: dict[str, Any] = {}

    def fit_data(self, dm: Any) -> ControlModel:
        """Nothing to fit: the controls are drawn (random) or read from the labels."""
        return self

    def _embedding(self, dm: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Joint and per-modality latents of every cell (drawn once, indexed by cell)."""
        if "joint" not in self._cache:
            n = dm.data.n_cells
            if self.kind == "random":
                rng = np.random.default_rng([self.seed, 1])
                joint = rng.standard_normal((n, RANDOM_DIMS)).astype(np.float32)
                latents = {
                    m: rng.standard_normal((n, RANDOM_DIMS)).astype(np.float32)
                    for m in dm.modalities
                }
            else:
                labels = dm.true_labels
                joint = np.zeros((n, max(len(dm.label_names), 1)), dtype=np.float32)
                joint[np.flatnonzero(labels >= 0), labels[labels >= 0]] = 1.0
                latents = {m: joint for m in dm.modalities}
            self._cache["joint"], self._cache["latents"] = joint, latents
        return self._cache["joint"], self._cache["latents"]

    def embed(self, dm: Any, cells: np.ndarray) -> Embedding:
        """Latents and groups of ``cells`` (groups: the labels for the label control, none
        for the random one: KMeans then groups it, as a model without a head)."""
        joint, latents = self._embedding(dm)
        groups = dm.true_labels[cells] if self.kind == "control" else None
        return Embedding(joint[cells], {m: z[cells] for m, z in latents.items()}, groups)

    def predict_cells(self, dm: Any, src: str, dst: str, cells: np.ndarray) -> np.ndarray:
        """``dst`` for ``cells``: the training mean per feature (control) or a draw from a
        normal with the training mean and variance per feature (random)."""
        mean, var = self._cache.setdefault(f"moments/{dst}", _train_moments(dm, dst))
        if self.kind == "control":
            return np.broadcast_to(mean, (len(cells), mean.size)).copy()
        # one stream per (pair, first cell): the draws do not depend on chunking order
        rng = np.random.default_rng([self.seed, 2, *map(ord, f"{src}>{dst}"), int(cells[0])])
        return mean + np.sqrt(var) * rng.standard_normal((len(cells), mean.size))


def _numbers(flat: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
    }


def score_controls(dm: Any, seed: int, eval_cfg: Mapping[str, Any] | None = None) -> dict:
    """The controls' scores on ``dm``'s test cells (``dm`` set up on the runs' split).

    Returns
    -------
    dict
        ``random`` and ``control`` (``{flattened metrics.json key: value}``), ``random_sd``
        (the sd over the random draws), ``split`` (``n_train``, ``n_val``, ``n_test``),
        ``test_labels`` (label codes of the test cells, -1 unlabelled) and ``label_names``.
    """
    ev = dict(eval_cfg or {})
    kwargs = dict(
        scib=bool(ev.get("scib", True)),
        kbet=bool(ev.get("kbet", False)),
        leiden=False,  # Leiden enters no scaled score
        seed=seed,
        scib_max_cells=ev.get("scib_max_cells", SCIB_MAX_CELLS),
    )
    draws = [
        _numbers(flatten(evaluate(ControlModel("random", seed * 1000 + i), dm, "test", **kwargs)))
        for i in range(N_RANDOM)
    ]
    keys = sorted(set().union(*draws))
    random = {k: float(np.mean([d[k] for d in draws if k in d])) for k in keys}
    random_sd = {k: float(np.std([d[k] for d in draws if k in d], ddof=1)) for k in keys}
    control = _numbers(flatten(evaluate(ControlModel("control"), dm, "test", **kwargs)))
    return {
        "random": random,
        "random_sd": random_sd,
        "control": control,
        "split": {f"n_{k}": int(len(v)) for k, v in dm.split.items()},
        "test_labels": [int(v) for v in dm.true_labels[dm.cells("test")]],
        "label_names": [str(v) for v in dm.label_names],
    }


def fingerprint(cfg: Mapping[str, Any]) -> str:
    """Hash of what a run's controls depend on: its data config, split, seed and the eval keys
    that change the metric code's output."""
    ev = cfg.get("eval") or {}
    what = {
        "version": CONTROL_VERSION,
        "data": cfg.get("data"),
        "split": cfg.get("split"),
        "seed": int(cfg.get("seed", 0)),
        "eval": {k: ev.get(k) for k in _EVAL_KEYS},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_name(cfg: Mapping[str, Any]) -> str:
    """``<dataset>__seed<k>.json`` for the default random split, else with the split kind and
    a hash of the split config (``<dataset>__holdout_batch-1a2b3c__seed<k>.json``: the same
    for every seed of one split)."""
    split = cfg.get("split") or {}
    data, seed = cfg["data"]["name"], int(cfg.get("seed", 0))
    default = split.get("kind", "random") == "random" and list(
        split.get("fractions", [0.8, 0.1, 0.1])
    ) == [0.8, 0.1, 0.1]
    digest = hashlib.sha256(json.dumps(split, sort_keys=True, default=str).encode()).hexdigest()
    tag = "" if default else f"__{split.get('kind')}-{digest[:6]}"
    return f"{data}{tag}__seed{seed}.json"


def load_or_compute(
    cfg: Mapping[str, Any], folder: str | Path, echo: Callable[[str], None] = print
) -> dict:
    """The controls of a run's config: read from ``folder`` when stored with the same
    fingerprint, else computed (data loaded and split as ``mmint fit`` does) and stored."""
    from mmint.fit import build_datamodule

    path = Path(folder) / file_name(cfg)
    fp = fingerprint(cfg)
    if path.exists():
        try:
            stored = read_json(path)
        except (OSError, ValueError):
            stored = {}
        if stored.get("fingerprint") == fp:
            return stored
    echo(f"controls: {path.name} (random and label/mean controls on the test cells)")
    dm = build_datamodule(dict(cfg), batch_size=int(cfg.get("model", {}).get("batch_size", 128)))
    seed = int(cfg.get("seed", 0))
    out = {
        "fingerprint": fp,
        "data": cfg["data"]["name"],
        "seed": seed,
        "split_config": cfg.get("split"),
        "definition": DEFINITION,
        **score_controls(dm, seed, cfg.get("eval")),
    }
    write_json(path, out)
    return out


def controls_for_runs(
    keys: Iterable[tuple[str, str, int]],
    config_of: Callable[[str, str, int], dict[str, Any] | None],
    folder: str | Path,
    echo: Callable[[str], None] = print,
) -> dict[tuple[str, str, int], dict]:
    """``{(data, variant, seed): controls}`` for the runs' keys; ``config_of`` gives a key's
    composed run config (None: no controls for it). A key whose controls fail is left out,
    with a note through ``echo``."""
    out: dict[tuple[str, str, int], dict] = {}
    for key in dict.fromkeys(keys):
        cfg = config_of(*key)
        if cfg is None:
            continue
        try:
            out[key] = load_or_compute(cfg, folder, echo)
        except Exception as err:  # noqa: BLE001 - a report without one control is still a report
            echo(f"note: controls of {key[0]} seed {key[2]} failed: {type(err).__name__}: {err}")
    return out
