"""The ORIGINAL UnitedNet (Tang et al. 2023) as a comparator, run by path from a checkout.

The original is GPL-3.0 research code: mmint holds none of its code or text. This adapter
imports a local checkout of github.com/LiuLab-Bioelectronics-Harvard/UnitedNet (tested at
fff36fa) named by ``$MMINT_UNITEDNET_ORIGINAL`` (the folder that contains ``src/``) and calls
its public interface (``src.interface.UnitedNet``, ``src.data.create_dataloader``,
``src.scripts.run_through_dataloader``). Get the checkout outside the repository, e.g.
``git --git-dir=<bare clone> archive HEAD | tar -x -C ~/unitednet`` and
``export MMINT_UNITEDNET_ORIGINAL=~/unitednet``.

The networks are those of mmint's ``unitednet`` built for the same data with the same
hyper-parameters (``unitednet: {...}`` overrides them), translated into the original's config
format, so that ``unitednet`` against ``unitednet_original`` on the same cells compares the two
implementations. Training is one stage of the original's ``task`` for ``max_epochs`` epochs on
the training cells, validated on the val cells, its best checkpoint reloaded; every output
comes from the original's own inference path (eval mode, its input noise included).

Two loading fixes are applied from outside: the original's Windows-only
``src/configs/__init__.py`` is bypassed by building ``src.configs`` here, and its whole-module
checkpoints are read with ``torch.load(weights_only=False)``.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import importlib
import os
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np

from mmint.callbacks.timing import median_epoch_seconds
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models.arrays import dense64
from mmint.models.hparams import record_hparams
from mmint.models.persist import SavedByAttributes
from mmint.models.wholeset import Embedding, WholeSetIntegrator

#: environment variable naming the original's checkout
ENV = "MMINT_UNITEDNET_ORIGINAL"
#: the original's task names for mmint's ``task`` values
TASKS = {
    "unsupervised": "unsupervised_group_identification",
    "supervised": "supervised_group_identification",
    "clus_then_translation": "cross_model_prediction_clus",
}
#: keys of a unitednet model config that are the adapter's own (not network hyper-parameters)
_OWN_KEYS = ("name", "max_epochs", "batch_size")
_LATENT = "the original's inference path returns the fused latent only"
NOT_APPLICABLE = {
    k: _LATENT for k in ("foscttm", "latent_distance", "foscttm_pairs", "latent_distance_pairs")
}


def checkout() -> Path:
    """The original's checkout from ``$MMINT_UNITEDNET_ORIGINAL``, or the one-line error."""
    path = os.environ.get(ENV)
    if not path:
        raise InputError(
            f"model 'unitednet_original' needs a checkout of the original UnitedNet; ${ENV} is "
            "not set",
            "model=unitednet_original",
            f"export {ENV}=<folder with src/ of github.com/LiuLab-Bioelectronics-Harvard/"
            "UnitedNet, outside this repository>",
        )
    root = Path(path).expanduser().resolve()
    if not (root / "src" / "interface.py").exists():
        raise InputError(
            f"${ENV}={path} has no src/interface.py",
            "model=unitednet_original",
            "point it at the root of the original's checkout (the folder that contains src/)",
        )
    return root


def import_original(root: Path) -> types.SimpleNamespace:
    """Import the original's package ``src`` from ``root``: ``UnitedNet``, ``data``,
    ``scripts`` (its ``src.configs`` built here, bypassing its Windows-only loader)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    src = importlib.import_module("src")
    cfg_dir = root / "src" / "configs"
    if "src.configs" not in sys.modules:
        mod = types.ModuleType("src.configs")
        mod.__path__ = [str(cfg_dir)]
        mod.__package__ = "src.configs"
        sys.modules["src.configs"] = mod
        src.configs = mod
        for f in sorted(glob.glob(str(cfg_dir / "*.py"))):
            name = Path(f).stem
            if name != "__init__":
                sub = importlib.import_module(f"src.configs.{name}")
                for k in dir(sub):
                    if not k.startswith("_"):
                        setattr(mod, k, getattr(sub, k))
    return types.SimpleNamespace(
        UnitedNet=importlib.import_module("src.interface").UnitedNet,
        data=importlib.import_module("src.data"),
        scripts=importlib.import_module("src.scripts"),
    )


def _mlp(n_in: int, hidden: list[int], n_out: int, out_act: str | None = None, **kw: Any) -> dict:
    """One network in the original's config format (per-layer lists)."""
    n = len(hidden) + 1
    drop, first = float(kw.get("dropout", 0.0)), bool(kw.get("first_only", False))
    cfg = {
        "input": n_in,
        "hiddens": list(hidden),
        "output": n_out,
        "use_biases": [True] * n,
        "dropouts": [drop if (i == 0 or not first) and i < n - 1 else 0.0 for i in range(n)],
        "activations": ["relu"] * (n - 1) + [out_act],
        "use_batch_norms": [bool(kw.get("bn"))] * (n - 1) + [bool(kw.get("out_bn"))],
        "use_layer_norms": [bool(kw.get("ln"))] * (n - 1) + [bool(kw.get("out_ln"))],
    }
    if kw.get("binary") is not None:
        cfg["is_binary_input"] = kw["binary"]
    return cfg


def original_config(hp: dict, dims: list[int], binary: list[bool], batch_size: int) -> dict:
    """The original's config with the networks of an mmint UnitedNet's hyper-parameters
    ``hp`` (a built model's ``hparams``; modality order as ``dims``)."""
    mods = list(hp["spec"]["modalities"])
    d = int(hp["latent_dim"])
    drop = hp["dropout"] if isinstance(hp["dropout"], dict) else dict.fromkeys(mods, hp["dropout"])
    norms = {"bn": bool(hp["batch_norm"]), "ln": bool(hp["layer_norm"])}
    lat = hp["latent_norm"]
    enc = [
        _mlp(
            n,
            hp["encoder_hidden"][m],
            d,
            hp["latent_activation"],
            dropout=drop.get(m, 0.0),
            first_only=hp["dropout_first_only"],
            out_bn=lat == "batch",
            out_ln=lat == "layer",
            binary=b,
            **norms,
        )
        for m, n, b in zip(mods, dims, binary, strict=True)
    ]
    dec = [
        _mlp(d, hp["decoder_hidden"][m], n, "sigmoid" if b else None)
        for m, n, b in zip(mods, dims, binary, strict=True)
    ]
    disc = [
        _mlp(
            n,
            hp["discriminator_hidden"][m],
            int(hp["discriminator_out_dim"]),
            "sigmoid",
            out_ln=hp["discriminator_out_norm"] == "layer",
        )
        for m, n in zip(mods, dims, strict=True)
    ]
    noise = hp["noise_level"]
    stages = {f"{s}_batch_size": batch_size for s in ("train", "finetune", "transfer")}
    stages.update({f"{s}_epochs": 1 for s in ("train", "finetune", "transfer")})
    stages.update({f"{s}_task": TASKS["unsupervised"] for s in ("train", "finetune", "transfer")})
    stages.update({f"{s}_loss_weight": None for s in ("train", "finetune", "transfer")})
    return {
        **stages,
        "lr": float(hp["lr"]),
        "checkpoint": 10**9,
        "n_head": int(hp["n_head"]),
        "fuser_type": "WeightedFeatureMean"
        if hp["fuser"] == "feature_weighted_mean"
        else "WeightedMean",
        "noise_level": [
            float(noise.get(m, 0.0) if isinstance(noise, dict) else noise) for m in mods
        ],
        "encoders": enc,
        "latent_projector": None if hp["latent_projector"] == "identity" else _mlp(d, [], d),
        "decoders": dec,
        "discriminators": disc,
        "projectors": _mlp(
            d, [], int(hp["projector_dim"]), "relu", out_ln=bool(hp["projector_norm"])
        ),
        "clusters": {
            **_mlp(int(hp["projector_dim"]), [], int(hp["n_groups"])),
            "use_biases": [False],
        },
    }


def _adatas(arrays: list[np.ndarray], labels: np.ndarray | None) -> list:
    """One AnnData per modality (the original's input), with ``obs['label']`` when given."""
    import anndata as ad
    import pandas as pd

    out = []
    for x in arrays:
        obs = pd.DataFrame(index=[str(i) for i in range(x.shape[0])])
        if labels is not None:
            obs["label"] = np.asarray(labels).astype(str)
        out.append(ad.AnnData(np.asarray(x, dtype=np.float32), obs=obs))
    return out


class _EpochClock:
    """Within ``with``: the wall and process CPU time at the end of each of the original's
    training epochs (its validation pass closes an epoch; ``run_through_dataloader`` of its
    ``scripts`` module is wrapped, and restored on exit), as mmint's ``Timing`` measures."""

    def __init__(self, scripts: Any) -> None:
        self.scripts, self.inner = scripts, scripts.run_through_dataloader
        self.wall_start = self.cpu_start = 0.0
        self.wall_ends: list[float] = []
        self.cpu_ends: list[float] = []

    def __enter__(self) -> Self:
        inner = self.inner

        def clocked(*args: Any, **kwargs: Any) -> Any:
            out = inner(*args, **kwargs)
            if kwargs.get("best_model_path"):  # the validation pass: an epoch ends
                self.wall_ends.append(time.perf_counter())
                self.cpu_ends.append(time.process_time())
            return out

        self.scripts.run_through_dataloader = clocked
        self.wall_start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.scripts.run_through_dataloader = self.inner


@contextlib.contextmanager
def _without_progress_bars(scripts: Any) -> Iterator[None]:
    """The original's per-epoch tqdm bars off within ``with`` (its ``scripts`` module imports
    ``tqdm`` by name; a suite or ``mmint fit`` shows its own progress)."""
    inner = getattr(scripts, "tqdm", None)
    if inner is None:
        yield
        return
    scripts.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        scripts.tqdm = inner


class UnitedNetOriginal(SavedByAttributes, WholeSetIntegrator):
    """The original UnitedNet behind mmint's whole-set interface.

    Parameters
    ----------
    spec
        Data description.
    max_epochs
        Epochs of the original's training stage.
    task
        ``unsupervised`` (default) or ``supervised`` (the original's group identification).
    n_groups
        Groups of the cluster heads (default: as mmint's ``unitednet`` resolves it).
    unitednet
        Hyper-parameters of mmint's ``unitednet`` whose networks the original builds (its
        defaults otherwise); a whole preset may be composed in, e.g.
        ``+model@model.unitednet=unitednet_patchseq`` (its ``name``, ``max_epochs`` and
        ``batch_size`` are ignored: this model's own keys set them).
    seed
        Seed of torch and numpy before training and inference.
    """

    name = "unitednet_original"
    not_applicable = NOT_APPLICABLE
    fitted_attributes = ("network", "model_info", "fit_cost")

    def __init__(
        self,
        spec: DataSpec | dict,
        max_epochs: int = 30,
        task: str = "unsupervised",
        n_groups: int | None = None,
        unitednet: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        self.spec = DataSpec.from_any(spec)
        checkout()  # the one-line error at once, before any data is read
        if task not in ("unsupervised", "supervised"):
            raise InputError(
                f"unitednet_original task '{task}' is not one of unsupervised, supervised",
                "model.task",
                "set model.task=unsupervised or model.task=supervised",
            )
        record_hparams(self, locals())
        self.max_epochs, self.task, self.n_groups = int(max_epochs), task, n_groups
        self.unitednet, self.seed = dict(unitednet or {}), int(seed)
        self.network: Any = None
        self.model_info: dict[str, Any] = {}
        self.fit_cost: dict[str, Any] = {}
        self._orig: Any = None
        self._cache: tuple[bytes, dict] | None = None

    # ------------------------------------------------------------------ the original
    def _original(self) -> Any:
        if self._orig is None:
            self._orig = import_original(checkout())
        return self._orig

    def _seed(self, offset: int) -> None:
        import torch

        torch.manual_seed(self.seed + offset)
        np.random.seed(self.seed + offset)

    def _arrays(self, dm: Any, cells: np.ndarray) -> list[np.ndarray]:
        # the original takes dense float32 arrays, in the data module's modality order
        return [dense64(dm.inputs[m][cells]).astype(np.float32) for m in dm.modalities]

    def fit_data(self, dm: Any) -> Self:
        """One training stage of the original on the training cells (val cells validate)."""
        import torch

        from mmint.models import build_model

        orig = self._original()
        mods = list(dm.modalities)
        # a whole unitednet model config may come in (a preset composed into model.unitednet):
        # its name, epochs and batch size are this adapter's own keys
        kw = {k: v for k, v in self.unitednet.items() if k not in _OWN_KEYS}
        kw["task"] = self.task
        if self.n_groups is not None:
            kw["n_groups"] = self.n_groups
        hp = dict(build_model("unitednet", dm.spec, **kw).hparams)
        dims = [int(dm.inputs[m].shape[1]) for m in mods]
        binary = [dm.data.modalities[m].kind == "binary" for m in mods]
        cfg = original_config(hp, dims, binary, int(dm.batch_size))
        cfg["train_task"] = TASKS[self.task]
        cfg["train_epochs"] = self.max_epochs
        train, val = dm.cells("train"), dm.cells("val")
        labels = np.asarray(dm.batch_labels)
        self._seed(0)
        clock = _EpochClock(orig.scripts)
        quiet = _without_progress_bars(orig.scripts)
        with tempfile.TemporaryDirectory(prefix="unitednet-original-") as save, clock, quiet:
            net = orig.UnitedNet(save, device="cpu", technique=copy.deepcopy(cfg))
            val_labels = labels[val] if self.task == "supervised" else None
            net.train(
                _adatas(self._arrays(dm, train), labels[train]),
                adatas_val=_adatas(self._arrays(dm, val), val_labels),
                init_classify=False,
            )
            self.network = torch.load(
                Path(save) / "train_best.pt", map_location="cpu", weights_only=False
            )
        self.network.device_in_use = "cpu"
        wall = clock.wall_ends[-1] - clock.wall_start if clock.wall_ends else 0.0
        self.fit_cost = {
            "epochs": self.max_epochs,
            "seconds_per_epoch": median_epoch_seconds(clock.wall_start, clock.wall_ends),
            "cells_per_second": len(train) * self.max_epochs / max(wall, 1e-9),
            "cpu_seconds_per_epoch": median_epoch_seconds(clock.cpu_start, clock.cpu_ends),
        }
        self.model_info = {
            "implementation": "original UnitedNet (by path)",
            "n_groups": int(hp["n_groups"]),
        }
        return self

    def _outputs(self, dm: Any, cells: np.ndarray) -> dict[str, Any]:
        """The original's translations ``[dst][src]``, groups and fused latent of ``cells``."""
        import torch

        key = np.asarray(cells, dtype=np.int64).tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        orig = self._original()
        self._seed(3000)
        loader = orig.data.create_dataloader(
            self.network, _adatas(self._arrays(dm, cells), None), shuffle=False
        )
        self.network.eval()
        with torch.no_grad():
            trans, groups, fused = orig.scripts.run_through_dataloader(
                self.network, loader, infer_model=True
            )
        out = {
            "translations": [[np.asarray(t) for t in row] for row in trans],
            "groups": np.asarray(groups),
            "joint": np.asarray(fused),
        }
        self._cache = (key, out)
        return out

    def embed(self, dm: Any, cells: np.ndarray) -> Embedding:
        """The fused latent and the best head's groups (no per-modality latents)."""
        out = self._outputs(dm, cells)
        return Embedding(joint=out["joint"], latents={}, groups=out["groups"])

    def predict_cells(self, dm: Any, src: str, dst: str, cells: np.ndarray) -> np.ndarray:
        """The original's translation ``dst <- src`` of ``cells``."""
        mods = list(dm.modalities)
        out = self._outputs(dm, cells)
        return out["translations"][mods.index(dst)][mods.index(src)]

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load a saved fit (the checkout must be importable: its classes are pickled)."""
        import_original(checkout())
        return super().load(path)
