"""UnitedNet parity: mmint's UnitedNet beside the original code, same cells, folds, seeds, inputs.

Both implementations get the same preprocessed arrays and cell sets
(``unitednet_parity_protocols.py``) and are scored by the same ``mmint.metrics`` functions.
With ``--ref PATH`` (a checkout of the original, see ``../shared/reference/harness/README.md``)
the original runs too; without it, mmint runs alone and the report sets it beside the
original's recorded figures (``../shared/reference/anchor-results.md``).

Protocols (``--runs``): ``patchseq_gouwen2020:reference`` (the original notebook: fold 9,
stage 1 cross-modal with selection on the test fold, stage 2 grouping with fresh heads on all
cells), ``patchseq_gouwen2020:honest`` (80/10/10 by seed, selection on val, test cells scored),
``dbitseq_mouse_embryo:reference`` (the original's dbitseq settings and notebook),
``bmmc_multiome_neurips2021_starter:honest`` (the original's supervised atacseq settings) and
``synthetic:honest`` (mmint's default data and model, the original with the same networks).

Every run is one process with one torch thread (``--jobs`` at a time). Each finished run is a
row of ``<out>/unitednet_parity.csv`` (written atomically); a rerun skips rows already there
(same dataset, protocol, implementation, variant, seed and mmint config hash) and rewrites
``<out>/unitednet_parity.md`` (mean +/- sd, paired differences with 95% intervals).

Usage::

    MMINT_DATA_DIR=../shared/data python benchmarks/unitednet_parity.py --ref ../scratch/UnitedNet \
        --runs patchseq_gouwen2020:reference --seeds 0 1 2 3 4 --jobs 2
    python benchmarks/unitednet_parity.py --runs patchseq_gouwen2020:reference \
        --variants before original --seeds 0 1 2        # the cause study's variants
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from unitednet_parity_protocols import Protocol, Result, build, score  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = ["dataset", "protocol", "implementation", "variant", "seed", "config_hash"]
DEFAULT_RUNS = [
    "patchseq_gouwen2020:reference",
    "patchseq_gouwen2020:honest",
    "dbitseq_mouse_embryo:reference",
    "bmmc_multiome_neurips2021_starter:honest",
    "synthetic:honest",
]
#: the original's figures measured by the reference harness (anchor-results.md), for runs
#: without --ref: (ari mean, sd, ari_class mean, sd)
RECORDED = {
    ("patchseq_gouwen2020", "reference"): (0.421, 0.033, 0.850, 0.034),
    ("patchseq_gouwen2020", "honest"): (0.362, 0.097, 0.767, 0.072),
}

# ------------------------------------------------------------------------- variants
#: every deviation switch at the original's value, and at mmint's value before this study
SWITCHES_ORIGINAL = {
    "contrastive_per_head": True,
    "ddc_sum_over_heads": True,
    "shared_discriminator_optimizer": True,
    "gradient_clip_val": 0.0,
    "best_head_rule": "vote",
    "noise_at_inference": True,
    "head_reinit": "default",
    "constant_discriminator": True,
}
SWITCHES_BEFORE = {
    "contrastive_per_head": False,
    "ddc_sum_over_heads": False,
    "shared_discriminator_optimizer": False,
    "gradient_clip_val": 25.0,
    "best_head_rule": "val_argmin",
    "noise_at_inference": False,
    "head_reinit": "kaiming_normal",
    "constant_discriminator": False,
}
#: the presets' networks before this study (decoder dropout, no discriminator dropout;
#: BatchNorm in the multiome decoders)
ARCH_BEFORE = {
    "patchseq_gouwen2020": {
        "decoder_dropout": {"rna": 0.5, "ephys": 0.0, "morph": 0.1},
        "discriminator_dropout": 0.0,
    },
    "bmmc_multiome_neurips2021_starter": {"decoder_batch_norm": True},
}


def variant_overrides(name: str, dataset: str) -> dict[str, Any]:
    """mmint model overrides of a variant ``<base>[+<mod>...][-<switch>...][@train_folds]``.

    Bases: ``default`` (mmint as configured), ``original`` (``compat: original``), ``before``
    (mmint before the parity study: its switches and presets then). ``+<switch>`` sets a
    switch to the original's value, ``-<switch>`` to mmint's former value; ``+arch`` gives
    ``before`` the fixed preset networks, ``+archbefore`` gives any base the former ones;
    ``@train_folds``: one scaler fitted on the training folds, as mmint's data module (a
    protocol change, not a model one).
    """
    rest, _, scaler = name.partition("@")
    out: dict[str, Any] = {"_scaler": scaler} if scaler else {}
    tokens = rest.replace("-", " -").replace("+", " +").split()
    base, mods = tokens[0], tokens[1:]
    if base == "original":
        out["compat"] = "original"
    elif base == "before":
        out.update(SWITCHES_BEFORE)
        if "+arch" not in mods:
            out.update(ARCH_BEFORE.get(dataset, {}))
    elif base != "default":
        raise SystemExit(f"error: unknown variant '{name}'")
    for mod in mods:
        key = mod[1:]
        if mod in ("+arch",):
            continue
        if mod == "+archbefore":
            out.update(ARCH_BEFORE.get(dataset, {}))
        elif key in SWITCHES_ORIGINAL:
            out[key] = (SWITCHES_ORIGINAL if mod[0] == "+" else SWITCHES_BEFORE)[key]
        else:
            raise SystemExit(f"error: unknown variant modifier '{mod}' in '{name}'")
    return out


# ---------------------------------------------------------------------------- mmint
def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _paired(proto: Protocol, inputs: dict[str, np.ndarray]):
    import anndata as ad

    from mmint.data import PairedData

    obs = pd.DataFrame(index=[f"cell{i}" for i in range(len(proto.labels))])
    obs["label"] = pd.Series(proto.labels, index=obs.index).where(
        ~pd.Series(proto.labels, index=obs.index).isin(proto.hidden_labels)
    )
    if proto.batches is not None:
        obs["batch"] = proto.batches.astype(str)
    if proto.classes:
        obs["class"] = [proto.classes.get(label) for label in proto.labels]
    adatas = {m: ad.AnnData(inputs[m], obs=obs.copy()) for m in proto.modalities}
    kinds = {m: "binary" if proto.binary[m] else "continuous" for m in proto.modalities}
    return PairedData.from_anndatas(
        adatas,
        kinds,
        label_key="label",
        batch_key="batch" if proto.batches is not None else None,
        class_key="class" if proto.classes else None,
    )


def _datamodule(proto: Protocol, inputs, train, val, test, batch_size: int):
    from mmint.data import PairedDataModule

    dm = PairedDataModule(
        _paired(proto, inputs),
        split={"kind": "given", "train": train, "val": val, "test": test},
        seed=proto.seed,
        batch_size=batch_size,
        transforms={m: "none" for m in proto.modalities},
    )
    dm.setup()
    return dm


def mmint_config(dataset: str, variant: str) -> tuple[dict, dict, str]:
    """The composed fit config, the model's hyper-parameters (preset + variant) and their
    hash (seed and group count are set per run)."""
    from mmint.cli import compose
    from mmint.config import plain

    cfg = plain(compose("fit", [f"data={dataset}", f"model={_preset(dataset)}", "logger=none"]))
    hp = {k: v for k, v in cfg["model"].items() if k not in ("name", "max_epochs")}
    hp.update(variant_overrides(variant, dataset))
    digest = hashlib.sha256(json.dumps(hp, sort_keys=True, default=str).encode()).hexdigest()
    return cfg, hp, digest[:12]


def _mmint_stage_settings(task: str) -> dict[str, Any]:
    return {
        "clus_then_translation": {"task": "unsupervised", "stage": "finetune", "adversarial": True},
        "unsupervised": {"task": "unsupervised", "stage": "train", "adversarial": None},
        "supervised": {"task": "supervised", "stage": "train", "adversarial": None},
    }[task]


def run_mmint(proto: Protocol, variant: str, work: Path) -> tuple[Result, dict[str, float]]:
    """Train mmint's UnitedNet through the protocol's stages; outputs on the scored cells."""
    import torch

    from mmint.fit import train_model
    from mmint.models import build_model

    cfg, hp, _ = mmint_config(proto.dataset, variant)
    cfg["seed"] = proto.seed
    hp.update(n_groups=proto.n_groups, seed=proto.seed)
    hp.pop("_scaler", None)
    batch_size = int(hp.pop("batch_size"))
    model, wall, cpu, epochs = None, 0.0, 0.0, 0
    _seed_all(proto.seed)
    for i, st in enumerate(proto.stages):
        cfg["eval"]["every_n_epochs"] = st.epochs
        cfg["trainer"]["enable_progress_bar"] = False
        val = st.train if st.val is None else st.val
        dm = _datamodule(proto, st.inputs, st.train, val, proto.score_cells, batch_size)
        settings = _mmint_stage_settings(st.task)
        if model is None:
            model = build_model("unitednet", dm.spec, **{**hp, **settings})
        else:
            model.configure_stage(task=settings["task"], stage=settings["stage"])
            model.hparams["adversarial"] = settings["adversarial"]
            if st.init_heads:
                model.reinit_group_heads()
        t0, c0 = time.perf_counter(), time.process_time()
        model, _ = train_model(model, dm, cfg, work / f"stage{i + 1}", st.epochs, [])
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        epochs += st.epochs
    dm = _datamodule(
        proto, proto.score_inputs, proto.class_fit_cells, proto.score_cells, proto.score_cells, 256
    )
    model.eval()
    with torch.no_grad():
        groups, joint, trans = _mmint_outputs(model, dm, proto.score_cells, proto.modalities)
        fit_groups = (
            groups
            if np.array_equal(proto.class_fit_cells, proto.score_cells)
            else _mmint_outputs(model, dm, proto.class_fit_cells, [])[0]
        )
    cost = {"seconds_per_epoch": wall / epochs, "cpu_seconds_per_epoch": cpu / epochs}
    return Result(groups, joint, trans, fit_groups), cost


def _mmint_outputs(model, dm, cells, mods):
    groups, joint = [], []
    trans: dict[tuple[str, str], list] = {(s, d): [] for s in mods for d in mods}
    for batch in dm.iter_batches(cells):
        groups.append(model.predict_groups(batch).numpy())
        joint.append(model.joint_latent(batch).numpy())
        for s, d in trans:
            trans[(s, d)].append(model.translate(batch, s, d).numpy())
    stacked = {k: np.concatenate(v) for k, v in trans.items()}
    return np.concatenate(groups), np.concatenate(joint), stacked


# ------------------------------------------------------------------------- original
def run_original(proto: Protocol, ref: str, work: Path) -> tuple[Result, dict[str, float]]:
    """Train the original through the same stages on the same arrays; its own inference."""
    import unitednet_original as uo

    from mmint.models import build_model

    orig = uo.import_original(ref)
    mods = proto.modalities
    dims = [proto.stages[0].inputs[m].shape[1] for m in mods]
    if proto.original_config == "mmint_default":
        _, hp, _ = mmint_config(proto.dataset, "default")
        hp.update(n_groups=proto.n_groups, seed=proto.seed)
        batch_size = int(hp.pop("batch_size"))
        dm = _datamodule(
            proto,
            proto.stages[0].inputs,
            proto.stages[0].train,
            proto.stages[0].val,
            proto.score_cells,
            batch_size,
        )
        hparams = dict(build_model("unitednet", dm.spec, **hp).hparams)
        config = uo.config_from_mmint(hparams, dims, [proto.binary[m] for m in mods], batch_size)
        config["clusters"]["output"] = proto.n_groups
    else:
        config = uo.shipped_config(orig, proto.original_config, dims, proto.n_groups)
    model, wall, cpu, epochs = None, 0.0, 0.0, 0
    for i, st in enumerate(proto.stages):
        _seed_all(proto.seed + 2000 * i)
        train = ([st.inputs[m][st.train] for m in mods], proto.labels[st.train])
        val = None
        if st.val is not None:
            labels = proto.labels[st.val] if st.task == "supervised" else None
            val = ([st.inputs[m][st.val] for m in mods], labels)
        t0, c0 = time.perf_counter(), time.process_time()
        model = uo.train_stage(
            orig, model, config, work / "original", st.task, st.epochs, train, val, st.init_heads
        )
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        epochs += st.epochs
    _seed_all(proto.seed + 3000)
    out = uo.outputs(orig, model.model, [proto.score_inputs[m][proto.score_cells] for m in mods])
    trans = {
        (mods[j], mods[i]): out["translations"][i][j]
        for i in range(len(mods))
        for j in range(len(mods))
    }
    fit_groups = out["groups"]
    if not np.array_equal(proto.class_fit_cells, proto.score_cells):
        fit = [proto.score_inputs[m][proto.class_fit_cells] for m in mods]
        fit_groups = uo.outputs(orig, model.model, fit)["groups"]
    cost = {"seconds_per_epoch": wall / epochs, "cpu_seconds_per_epoch": cpu / epochs}
    return Result(out["groups"], out["joint"], trans, fit_groups), cost


# ---------------------------------------------------------------------------- tasks
def run_task(
    task: dict[str, Any], ref: str | None, work: str, max_epochs: int | None = None
) -> dict[str, Any]:
    """One (dataset, protocol, implementation, variant, seed) run in this process."""
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("CI", "true")  # no progress bars in workers
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # device banners, tips
    mmint = task["implementation"] == "mmint"
    variant = variant_overrides(task["variant"], task["dataset"]) if mmint else {}
    scaler = variant.get("_scaler") or "original"
    proto = build(task["dataset"], task["protocol"], task["seed"], scaler)
    for st in proto.stages:
        st.epochs = min(st.epochs, max_epochs or st.epochs)
    folder = Path(work) / "__".join(str(task[k]) for k in KEY)
    if task["implementation"] == "original":
        result, cost = run_original(proto, ref, folder)
    else:
        result, cost = run_mmint(proto, task["variant"], folder)
    return {**task, **score(proto, result), **cost}


def tasks_for(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every run asked for, the original's first (they are the reference of each pair)."""
    out = []
    for run in args.runs:
        dataset, _, protocol = run.partition(":")
        for seed in args.seeds:
            if args.ref and not args.no_original:
                out.append(
                    dict(
                        dataset=dataset,
                        protocol=protocol,
                        implementation="original",
                        variant="-",
                        seed=seed,
                        config_hash="-",
                    )
                )
            for variant in [] if args.no_mmint else args.variants:
                digest = mmint_config(dataset, variant)[2]
                out.append(
                    dict(
                        dataset=dataset,
                        protocol=protocol,
                        implementation="mmint",
                        variant=variant,
                        seed=seed,
                        config_hash=digest,
                    )
                )
    return out


def _preset(dataset: str) -> str:
    return {
        "patchseq_gouwen2020": "unitednet_patchseq",
        "dbitseq_mouse_embryo": "unitednet_dbitseq",
        "bmmc_multiome_neurips2021_starter": "unitednet_multiome",
    }.get(dataset, "unitednet")


def _done(table: pd.DataFrame, task: dict[str, Any]) -> bool:
    if table.empty:
        return False
    hit = np.ones(len(table), dtype=bool)
    for k in KEY:
        hit &= table[k].astype(str).to_numpy() == str(task[k])
    return bool(hit.any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=None, help="checkout of the original (contains src/)")
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="dataset:protocol")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--no-original", action="store_true", help="mmint rows only")
    parser.add_argument("--no-mmint", action="store_true", help="the original's rows only")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "unitednet_parity")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap per stage (smoke runs)")
    args = parser.parse_args()
    os.environ.setdefault("MMINT_DATA_DIR", str(REPO.parent / "shared" / "data"))
    from unitednet_parity_report import report

    from mmint.io import atomic_write

    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "unitednet_parity.csv"
    table = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=KEY)
    todo = [] if args.report_only else [t for t in tasks_for(args) if not _done(table, t)]
    print(f"{len(todo)} runs to do ({platform.node()}, {os.cpu_count()} cpus)", flush=True)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {
            pool.submit(run_task, t, args.ref, str(args.work), args.max_epochs): t for t in todo
        }
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                row = fut.result()
            except Exception:  # one failed run must not lose the others
                print(f"FAILED {task}:\n{traceback.format_exc()}", flush=True)
                continue
            table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
            atomic_write(csv, table.to_csv(index=False))
            atomic_write(args.out / "unitednet_parity.md", report(table, RECORDED))
            print(
                f"{row['dataset']}:{row['protocol']} {row['implementation']} {row['variant']} "
                f"seed {row['seed']}: ari {row['ari']:.3f} "
                f"({row['seconds_per_epoch']:.2f} s/epoch)",
                flush=True,
            )
    atomic_write(args.out / "unitednet_parity.md", report(table, RECORDED))


if __name__ == "__main__":
    main()
