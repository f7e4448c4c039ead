"""One speed table: training cost per epoch of mmint's models against the original
implementations, measured side by side in one run, one thread.

Rows (``--rows``, ``model:dataset:task``; each implementation of a row runs in its own process,
so peak RSS is per fit):

- ``unitednet:reference_shape:supervised`` / ``unsupervised``: 2000 cells x (2000 binary + 500
  continuous), 10 classes, batch 512, the original's multiome (atacseq) networks, epoch
  alternation (one translation pass, then 2M = 4 classification passes or 1 clustering pass,
  then a validation pass over the 2000 cells), as the original was timed
  (``shared/reference/unitednet.md`` section 8);
- ``unitednet:patchseq_gouwen2020:unsupervised``: the Patch-seq preset (batch 16, 10 heads) on
  the 448 cells, stage 2 of the reference protocol (translation + clustering pass, validation
  on all cells);
- ``multivi:snareseq_mouse_cortex_chen2019:-``: the MultiVI-style model with MULTIVI's
  settings and sizes (``benchmarks/multivi_parity.py``: n_hidden 128, n_latent 20, batch 128,
  ZINB genes, learned library, AdamW lr 1e-4) on the 8,247 training cells of SNARE-seq
  (seed-0 split), against scvi-tools' ``MULTIVI`` on the same cells (``scvi-tools`` rows, run
  when scvi-tools is installed: ``pip install -e .[scvi]``);
- ``cvqvae:snareseq_mouse_cortex_chen2019:-``: the CVQVAE-style model with its own config on the
  same cells (its ratio is against the MultiVI-style row).

``mmint`` rows train through Lightning with the fit pipeline's checkpointing (best and last
checkpoint every epoch, a validation pass every epoch); ``original`` rows (``--ref PATH``, a
checkout of the original) through its own ``train`` with its shipped config (it saves a
whole-model checkpoint every epoch); ``scvi-tools`` rows through ``MULTIVI.train`` (its own
defaults: no validation pass and no checkpoint without early stopping, so its epochs do less
work than mmint's).
Seconds per epoch are process CPU seconds (one thread: what an idle core takes), the median
over epochs 2..N; ``cells_per_second`` = training cells per epoch / that. The markdown adds
the ratios and a lower bound: the floating-point work of one mmint epoch (counted by
``torch.utils.flop_counter``) at this machine's measured matmul rate.

Usage::

    python benchmarks/speed.py --ref ../scratch/UnitedNet --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
COLUMNS = [
    "model",
    "dataset",
    "task",
    "implementation",
    "threads",
    "cells_per_second",
    "seconds_per_epoch",
    "peak_rss_mb",
    "wall_seconds_per_epoch",
    "load_start",
    "load_end",
]
#: recorded per row after ``epoch_flops``: the command that produced the row
COMMAND = "command"
UNITEDNET_ROWS = [
    "unitednet:reference_shape:supervised",
    "unitednet:reference_shape:unsupervised",
    "unitednet:patchseq_gouwen2020:unsupervised",
]
SNARE = "snareseq_mouse_cortex_chen2019"
SNARE_ROWS = [f"multivi:{SNARE}:-", f"cvqvae:{SNARE}:-"]
#: implementations timed per model (``original`` needs ``--ref``, ``scvi-tools`` the package)
IMPLEMENTATIONS = {
    "unitednet": ("mmint", "original"),
    "multivi": ("mmint", "scvi-tools"),
    "cvqvae": ("mmint",),
}
N_CELLS, N_BINARY, N_CONT, N_CLASSES = 2000, 2000, 500, 10


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ data
def reference_shape(seed: int = 0) -> dict[str, Any]:
    """Random inputs of the shape the original was timed on, with class structure."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, N_CELLS)
    p = rng.uniform(0.02, 0.3, (N_CLASSES, N_BINARY))
    atac = (rng.random((N_CELLS, N_BINARY)) < p[labels]).astype(np.float32)
    mu = rng.normal(0, 1, (N_CLASSES, N_CONT))
    rna = (mu[labels] + rng.normal(0, 1, (N_CELLS, N_CONT))).astype(np.float32)
    return {
        "inputs": {"atac": atac, "rna": rna},
        "binary": {"atac": True, "rna": False},
        "labels": np.array([f"c{i}" for i in labels]),
        "order": ["atac", "rna"],
        "preset": "unitednet_multiome",
        "config": "atacseq_config",
        "batch_size": 512,
        "n_groups": N_CLASSES,
    }


def patchseq() -> dict[str, Any]:
    """The Patch-seq reference protocol's stage-2 inputs (all cells, one scaler)."""
    from unitednet_parity_protocols import patchseq as protocol

    proto = protocol("reference", 0)
    return {
        "inputs": proto.stages[1].inputs,
        "binary": proto.binary,
        "labels": proto.labels,
        "order": proto.modalities,
        "preset": "unitednet_patchseq",
        "config": "patchseq_config",
        "batch_size": 16,
        "n_groups": 27,
    }


def dataset(name: str) -> dict[str, Any]:
    return reference_shape() if name == "reference_shape" else patchseq()


# --------------------------------------------------------------------------- timers
def _median_after_first(ends: list[float], start: float) -> float:
    per_epoch = np.diff([start, *ends])
    return float(statistics.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch))


def time_mmint(row: str, epochs: int, workdir: Path) -> dict[str, Any]:
    """One mmint fit of ``epochs`` epochs; CPU seconds per epoch (validation included)."""
    import lightning as L
    from unitednet_parity import _datamodule, mmint_config

    from mmint.models import build_model

    model_name, data_name, task = row.split(":")
    d = dataset(data_name)
    cfg, hp, _ = mmint_config(
        "bmmc_multiome_neurips2021_starter" if data_name == "reference_shape" else data_name,
        "default",
    )
    hp.pop("batch_size")
    hp.update(n_groups=d["n_groups"], task=task)
    proto = _Proto(d)
    every = np.arange(len(d["labels"]))
    dm = _datamodule(proto, d["inputs"], every, every, every, d["batch_size"])
    L.seed_everything(0, verbose=False)
    model = build_model(model_name, dm.spec, **hp)
    clock = fit_clocked(model, dm, epochs, workdir)
    flops = epoch_flops(model, dm)
    return {
        "seconds_per_epoch": _median_after_first(clock.ends, clock.start),
        "n_cells": len(every),
        "epoch_flops": flops,
    }


def epoch_clock():
    """A Lightning callback recording process CPU time at the start of training and at the end
    of every epoch (its validation and checkpoints included)."""
    import lightning as L

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.start, self.ends = 0.0, []
            self.wall_start, self.wall_ends = 0.0, []

        def on_train_start(self, trainer, pl_module) -> None:
            self.start, self.wall_start = time.process_time(), time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.ends.append(time.process_time())
            self.wall_ends.append(time.perf_counter())

        def wall(self) -> float:
            """Median wall seconds per epoch over epochs 2..N."""
            return _median_after_first(self.wall_ends, self.wall_start)

    return Clock()


def fit_clocked(model, dm, epochs: int, workdir: Path):
    """Train ``model`` for ``epochs`` epochs with the fit pipeline's checkpointing; the clock."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    clock = epoch_clock()
    callbacks = [
        ModelCheckpoint(
            dirpath=workdir,
            filename="best",
            monitor="val/loss",
            mode="min",
            save_top_k=1,
            enable_version_counter=False,
        ),
        ModelCheckpoint(
            dirpath=workdir,
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        ),
        clock,
    ]
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(model, datamodule=dm)
    return clock


# ------------------------------------------------------------------- SNARE-seq rows
def snare_config(model_name: str, epochs: int) -> dict[str, Any]:
    """The fit config of a SNARE-seq row: MULTIVI's settings for ``multivi`` (as the parity
    benchmark), the model's own config for ``cvqvae``; seed 0, one thread."""
    from mmint.cli import compose
    from mmint.config import plain

    if model_name == "multivi":
        from multivi_parity import compose_cfg

        return compose_cfg(SNARE, 0, epochs)
    over = [f"data={SNARE}", f"model={model_name}", "seed=0", "logger=none", "trainer=cpu"]
    return plain(compose("fit", [*over, "trainer.num_threads=1", f"model.max_epochs={epochs}"]))


def time_mmint_snare(row: str, epochs: int, workdir: Path) -> dict[str, Any]:
    """One mmint fit of a SNARE-seq row (the fit pipeline's setup, checkpointing each epoch)."""
    from mmint.fit import _setup

    model_name = row.split(":")[0]
    _, _, _, dm, model = _setup(snare_config(model_name, epochs))
    clock = fit_clocked(model, dm, epochs, workdir)
    return {
        "seconds_per_epoch": _median_after_first(clock.ends, clock.start),
        "wall_seconds_per_epoch": clock.wall(),
        "n_cells": len(dm.split["train"]),
        "epoch_flops": step_flops(model, dm),
    }


def time_scvi(row: str, epochs: int, workdir: Path) -> dict[str, Any]:
    """scvi-tools' ``MULTIVI`` with the parity benchmark's settings on the same training cells."""
    import gc

    import scvi
    from multivi_parity import BATCH_SIZE, N_HIDDEN, N_LATENT, compose_cfg, train_kwargs
    from scvi.model import MULTIVI

    from mmint.fit import build_datamodule
    from mmint.models.scvi_tools.data import build_mudata  # as the parity benchmark

    scvi.settings.num_threads = 1
    scvi.settings.dl_num_workers = 0
    dm = build_datamodule(compose_cfg(SNARE, 0, epochs), BATCH_SIZE)
    mdata, roles = build_mudata(dm)
    split = [np.asarray(dm.split[s], dtype=np.int64) for s in ("train", "val", "test")]
    del dm  # MULTIVI holds its own copy of the data
    gc.collect()
    scvi.settings.seed = 0
    MULTIVI.setup_mudata(
        mdata, batch_key="batch", modalities={**roles, "batch_key": roles["rna_layer"]}
    )
    model = MULTIVI(
        mdata,
        n_genes=mdata[roles["rna_layer"]].n_vars,
        n_regions=mdata[roles["atac_layer"]].n_vars,
        n_hidden=N_HIDDEN[SNARE],
        n_latent=N_LATENT,
    )
    clock = epoch_clock()
    model.train(**train_kwargs(epochs, split, clock))
    return {
        "seconds_per_epoch": _median_after_first(clock.ends, clock.start),
        "wall_seconds_per_epoch": clock.wall(),
        "n_cells": len(split[0]),
    }


def step_flops(model, dm) -> float:
    """Floating-point operations of one epoch of a one-step-per-batch model: one training step
    and one validation step counted on a batch of each, scaled by the batches per pass (the
    sparse first layers count nothing: ``embedding_bag`` has no FLOP formula)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    train, val = dm.train_dataloader(), dm.val_dataloader()
    batch = next(iter(train))
    model.train()
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts
    model.manual_backward = lambda loss: loss.backward()
    model.log = lambda *a, **k: None
    model._trainer = None
    counter = FlopCounterMode(display=False)
    with counter:
        model.training_step(batch, 0)
    total = counter.get_total_flops() * len(train)
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.validation_step(next(iter(val)), 0)
    return float(total + counter.get_total_flops() * len(val))


class _Proto:
    """The few protocol fields ``unitednet_parity._datamodule`` reads."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.modalities, self.binary, self.labels = d["order"], d["binary"], d["labels"]
        self.hidden_labels: set[str] = set()
        self.batches = None
        self.classes: dict[str, str] | None = None
        self.seed = 0


def epoch_flops(model, dm) -> float:
    """Floating-point operations of one epoch of ``model`` (its schedule, one validation pass),
    counted on one batch of each phase and scaled by the batches per pass."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmint import keys

    train = dm.train_dataloader()
    batches_per_pass = len(train) // max(1, model.train_passes_per_epoch)
    batch = next(iter(dm.val_dataloader()))
    model.train()
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts
    model.manual_backward = lambda loss: loss.backward()
    model.clip_gradients = lambda *a, **k: None
    model.log = lambda *a, **k: None
    total = 0.0
    for phase in model.schedule:
        counter = FlopCounterMode(display=False)
        with counter:
            {"pgc": model._pgc_step, "group": model._group_step}[phase](batch)
        total += counter.get_total_flops() * batches_per_pass
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.validation_step(batch, 0)
    total += counter.get_total_flops() * len(dm.val_dataloader())
    assert keys.INDEX in batch
    return float(total)


def time_original(row: str, epochs: int, workdir: Path, ref: str) -> dict[str, Any]:
    """The original's ``train`` for ``epochs`` epochs with its shipped config."""
    import unitednet_original as uo

    _, data_name, task = row.split(":")
    d = dataset(data_name)
    orig = uo.import_original(ref)
    dims = [d["inputs"][m].shape[1] for m in d["order"]]
    cfg = uo.shipped_config(orig, d["config"], dims, d["n_groups"])
    cfg["train_batch_size"] = d["batch_size"]
    ends: list[float] = []
    inner = orig.scripts.run_through_dataloader

    def clocked(model, loader, schedule=None, train_model=False, *args, **kwargs):
        out = inner(model, loader, schedule, train_model, *args, **kwargs)
        if kwargs.get("best_model_path"):  # the validation pass closes an epoch
            ends.append(time.process_time())
        return out

    orig.scripts.run_through_dataloader = clocked
    arrays = [d["inputs"][m] for m in d["order"]]
    start = time.process_time()
    uo.train_stage(orig, None, cfg, workdir, task, epochs, (arrays, d["labels"]), None, False)
    return {"seconds_per_epoch": _median_after_first(ends, start), "n_cells": len(d["labels"])}


def gflops_per_second() -> float:
    """This machine's float32 matmul rate on one thread (best of 5, 1024 x 1024, CPU time)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        for _ in range(10):
            a @ b
        best = min(best, (time.process_time() - t) / 10)
    return 2 * 1024**3 / best / 1e9


# ----------------------------------------------------------------------------- main
def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    os.environ.setdefault("CI", "true")
    workdir = args.work / args.row.replace(":", "_") / args.implementation
    load_start = os.getloadavg()[0]
    if args.implementation == "original":
        out = time_original(args.row, args.epochs, workdir, args.ref)
    elif args.implementation == "scvi-tools":
        out = time_scvi(args.row, args.epochs, workdir)
    elif args.row.split(":")[0] in ("multivi", "cvqvae"):
        out = time_mmint_snare(args.row, args.epochs, workdir)
    else:
        out = time_mmint(args.row, args.epochs, workdir)
    model, data, task = args.row.split(":")
    out.update(
        model=model,
        dataset=data,
        task=task,
        implementation=args.implementation,
        threads=1,
        peak_rss_mb=peak_rss_mb(),
        load_start=load_start,
        load_end=os.getloadavg()[0],
        cells_per_second=out["n_cells"] / out["seconds_per_epoch"],
    )
    print("RESULT " + json.dumps(out), flush=True)


def run_child(row: str, implementation: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """One row in a fresh process; ``mmint@<label>`` runs the mmint code of ``--before``."""
    env = {**os.environ}
    if implementation.startswith("mmint@"):
        env["PYTHONPATH"] = os.pathsep.join([str(args.before), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--row",
        row,
        "--implementation",
        implementation,
        "--epochs",
        str(args.epochs),
        "--work",
        str(args.work),
    ]
    if args.ref:
        cmd += ["--ref", args.ref]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            return {**out, "implementation": implementation}
    print(f"FAILED {row} {implementation}:\n{proc.stderr[-3000:]}", flush=True)
    return None


def implementations(row: str, ref: str | None, before: str | None = None) -> list[str]:
    """The implementations timed for ``row``: ``original`` only with ``--ref``, ``scvi-tools``
    only when it is installed, ``mmint@<before>`` (the mmint code of ``--before``) first when
    given."""
    import importlib.util

    out = [f"mmint@{before}"] if before else []
    for impl in IMPLEMENTATIONS[row.split(":")[0]]:
        if impl == "original" and not ref:
            continue
        if impl == "scvi-tools" and importlib.util.find_spec("scvi") is None:
            print(f"{row}: scvi-tools is not installed (pip install -e .[scvi]): skipped")
            continue
        out.append(impl)
    return out


def report(rows: list[dict[str, Any]], gflops: float, command: str) -> str:
    """Markdown: the table, mmint / reference ratios, the FLOP-based lower bound."""
    import pandas as pd

    table = pd.DataFrame(rows)
    lines = [
        "# Training speed: mmint against the original implementations",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"python {platform.python_version()}; one torch thread per process",
        f"- measured matmul rate: {gflops:.1f} GFLOP/s (one thread, float32 1024 x 1024)",
        "- seconds per epoch: process CPU seconds, median over epochs 2..N (validation and "
        "checkpoint writing included); ``wall_seconds_per_epoch`` the same in wall seconds "
        "(inflated by other jobs on a shared machine: CPU seconds are the figure compared); "
        "``load_start`` / ``load_end``: 1-minute load average when each row's process started "
        "and ended",
        "",
        table.reindex(columns=COLUMNS).to_markdown(index=False, floatfmt=".3f"),
        "",
        "| model | dataset | task | mmint / reference speed | FLOPs per epoch | lower bound s / epoch | mmint s / epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, data, task), block in table.groupby(["model", "dataset", "task"], sort=False):
        mine = block[block["implementation"] == "mmint"]
        other = block[~block["implementation"].str.startswith("mmint")]
        if mine.empty:
            continue
        m = mine.iloc[0]
        ratio = "-"
        if not other.empty:
            ratio = f"{other.iloc[0]['seconds_per_epoch'] / m['seconds_per_epoch']:.2f}x"
        flops = m.get("epoch_flops")
        bound = f"{flops / (gflops * 1e9):.3f}" if flops and flops == flops else "-"
        fl = f"{flops / 1e9:.2f} G" if flops and flops == flops else "-"
        lines.append(
            f"| {model} | {data} | {task} | {ratio} | {fl} | {bound} | "
            f"{m['seconds_per_epoch']:.3f} |"
        )
    return "\n".join(lines + before_after(table) + snare_checks(table) + commands(table)) + "\n"


def before_after(table) -> list[str]:
    """``mmint@<label>`` rows (earlier mmint code, timed in the same run) against ``mmint``."""
    out = []
    for (model, data, task), block in table.groupby(["model", "dataset", "task"], sort=False):
        mine = block[block["implementation"] == "mmint"]
        for _, old in block[block["implementation"].str.startswith("mmint@")].iterrows():
            if mine.empty:
                continue
            now = mine.iloc[0]["seconds_per_epoch"]
            out.append(
                f"- {model} {data} {task}: {old['implementation']} "
                f"{old['seconds_per_epoch']:.3f} -> mmint {now:.3f} CPU s per epoch "
                f"({old['seconds_per_epoch'] / now:.2f}x)"
            )
    return ["", *out] if out else []


def commands(table) -> list[str]:
    """The command that produced each row (``speed.csv``'s ``command`` column)."""
    if COMMAND not in table:
        return []
    out = ["", "Commands, per row (model, dataset, task, implementation):", ""]
    for _, r in table.iterrows():
        cmd = r[COMMAND] if isinstance(r[COMMAND], str) else "not recorded"
        out.append(f"- {r['model']}, {r['dataset']}, {r['task']}, {r['implementation']}: `{cmd}`")
    return out


def snare_checks(table) -> list[str]:
    """The SNARE-seq targets: MultiVI-style at least 3x scvi-tools' cells per second, peak RSS
    no higher; CVQVAE-style no slower per cell than the MultiVI-style model, RSS no higher."""

    def row(model: str, impl: str):
        hit = table[
            (table["model"] == model)
            & (table["dataset"] == SNARE)
            & (table["implementation"] == impl)
        ]
        return None if hit.empty else hit.iloc[0]

    mine, scvi, cvq = row("multivi", "mmint"), row("multivi", "scvi-tools"), row("cvqvae", "mmint")
    out = []
    if mine is not None and scvi is not None:
        speed = mine["cells_per_second"] / scvi["cells_per_second"]
        out.append(
            f"- SNARE-seq, MultiVI-style vs scvi-tools MULTIVI: {speed:.2f}x the cells per second "
            f"(target >= 3x: {'met' if speed >= 3 else 'NOT met'}); peak RSS "
            f"{mine['peak_rss_mb']:.0f} vs {scvi['peak_rss_mb']:.0f} MB "
            f"({'no higher' if mine['peak_rss_mb'] <= scvi['peak_rss_mb'] else 'HIGHER'})"
        )
    if cvq is not None and mine is not None:
        ratio = cvq["cells_per_second"] / mine["cells_per_second"]
        line = (
            f"- SNARE-seq, CVQVAE-style vs MultiVI-style: {ratio:.2f}x the cells per second "
            f"(target >= 1x: {'met' if ratio >= 1 else 'NOT met'})"
        )
        if scvi is not None:
            ok = cvq["peak_rss_mb"] <= scvi["peak_rss_mb"]
            line += (
                f"; peak RSS {cvq['peak_rss_mb']:.0f} vs MULTIVI's {scvi['peak_rss_mb']:.0f} MB "
                f"({'no higher' if ok else 'HIGHER'})"
            )
        out.append(line)
    return ["", *out] if out else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=None)
    parser.add_argument("--rows", nargs="+", default=UNITEDNET_ROWS + SNARE_ROWS)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "speed")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a source tree of earlier mmint code (git archive COMMIT | tar -x -C PATH): its "
        "rows run beside the current code's, as implementation mmint@<--before-label>",
    )
    parser.add_argument("--before-label", default="before")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MMINT_DATA_DIR", str(REPO.parent / "shared" / "data"))
    if args.child:
        child(args)
        return
    from mmint.io import atomic_write

    rows = []
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    for row in args.rows:
        label = args.before_label if args.before and row.startswith("unitednet") else None
        for impl in implementations(row, args.ref, label):
            res = run_child(row, impl, args)
            if res:
                rows.append({**res, COMMAND: command})
                print(
                    f"{row} {impl}: {res['seconds_per_epoch']:.3f} CPU s/epoch, "
                    f"{res['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    import torch

    torch.set_num_threads(1)
    gflops = gflops_per_second()
    import pandas as pd

    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "speed.csv"
    old = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)
    new = pd.DataFrame(rows)
    keys = ["model", "dataset", "task", "implementation"]
    if not old.empty:
        done = set(map(tuple, new[keys].astype(str).to_numpy()))
        old = old[[tuple(r) not in done for r in old[keys].astype(str).to_numpy()]]
    table = pd.concat([df for df in (old, new) if not df.empty], ignore_index=True)
    atomic_write(
        csv,
        table.reindex(columns=[*COLUMNS, "epoch_flops", COMMAND]).to_csv(index=False),
    )
    atomic_write(args.out / "speed.md", report(table.to_dict("records"), gflops, command))
    print(report(table.to_dict("records"), gflops, command))


if __name__ == "__main__":
    main()
