"""Throughput of the shared data layer: cells/s of the train loader (in memory and backed),
beside a training step, and peak memory.

For each dataset, in a fresh child process (so that each peak RSS is its own):

1. **snareseq_mouse_cortex_chen2019** (10,309 cells, 1,677 genes, 25,734 peaks), read from
   ``$MMINT_DATA_DIR`` (default ``../shared/data`` relative to the repository).
2. **A simulated 100k x 100k dataset**: ``mmint.data.simulate.simulate(n_cells=100_000,
   modalities={"rna": ("counts", 2000), "atac": ("binary", 100_000)}, n_links=0,
   sparsity=0.99)``. The peaks are 99 % zeros (SNARE-seq's are 99.6 %); the default 90 % would
   be 10^9 non-zeros (about 8 GB as CSR). The simulation time is reported too.

Steps timed per dataset: building the data (load or simulate), ``PairedData`` checks,
``PairedDataModule.setup`` (split, train-only transform fitting, transforming every cell), and
full epochs of the train loader (every dict batch; wide sparse modalities as sparse batches,
as MultiVI-style reads them) at the batch sizes given, three epochs each (median and best
reported). The same again with ``data.backed``: the modalities written to ``.h5ad`` files
first, then read lazily in file blocks with block shuffling (``backed`` rows). Beside them,
``training steps``: ``--steps`` MultiVI-style training steps through Lightning (loader
included, no validation) at batch size 128, in cells per second, so that the loader's rate
can be compared with what a model consumes. Peak memory is
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after each step (a running maximum).
``torch.set_num_threads(1)``.

Usage::

    python benchmarks/data_throughput.py [--out benchmarks/results/data_throughput.md]
        [--cells 100000] [--genes 2000] [--peaks 100000] [--sparsity 0.99]
        [--batch-sizes 128 512] [--repeats 3] [--steps 30] [--skip-real] [--skip-sim]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import machine, peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
REAL = "snareseq_mouse_cortex_chen2019"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "data_throughput.md"


# ---------------------------------------------------------------------- one dataset (child)
def run_one(which: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time one dataset in this process and return its numbers."""
    t_imports = time.perf_counter()
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp
    import torch

    torch.set_num_threads(1)
    from mmint.data import PairedData, PairedDataModule, load_dataset

    out: dict[str, Any] = {"dataset": which, "steps": {}, "epochs": []}

    def step(name: str, seconds: float) -> None:
        out["steps"][name] = {"seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
        print(f"  {which}: {name} {seconds:.2f} s, peak RSS {peak_rss_mb():.0f} MB", flush=True)

    step("imports (numpy, torch, lightning, mmint)", time.perf_counter() - t_imports)
    if which == "snareseq":
        t = time.perf_counter()
        data = load_dataset(REAL)
        step("load + checks", time.perf_counter() - t)
    else:
        from mmint.data.simulate import simulate

        t = time.perf_counter()
        sim = simulate(
            n_cells=args.cells,
            modalities={"rna": ("counts", args.genes), "atac": ("binary", args.peaks)},
            n_links=0,
            sparsity=args.sparsity,
            seed=0,
        )
        step("simulate", time.perf_counter() - t)
        t = time.perf_counter()
        data = PairedData.from_anndatas(
            sim.adatas, sim.kinds, label_key="cell_type", batch_key="batch"
        )
        del sim
        step("PairedData checks", time.perf_counter() - t)

    out["n_cells"] = data.n_cells
    out["modalities"] = {
        m: {
            "kind": mod.kind,
            "features": mod.n_features,
            "nnz": int(mod.x.nnz if sp.issparse(mod.x) else np.count_nonzero(mod.x)),
        }
        for m, mod in data.modalities.items()
    }
    t = time.perf_counter()
    dm = PairedDataModule(data, seed=0, batch_size=args.batch_sizes[0])
    dm.setup()
    step("datamodule setup", time.perf_counter() - t)
    out["n_train"] = len(dm.split["train"])
    out["input_sparse"] = {m: bool(sp.issparse(x)) for m, x in dm.inputs.items()}

    dm.sparse_batches = True  # as a model with sparse first layers reads them
    _time_loader(dm, "in memory", args, out)
    if args.backed:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for m, mod in data.modalities.items():
                a = ad.AnnData(X=mod.x, obs=data.obs.copy())
                a.var_names = list(mod.var_names)
                paths[m] = Path(tmp) / f"{m}.h5ad"
                a.write_h5ad(paths[m])
            kinds = {m: mod.kind for m, mod in data.modalities.items()}
            t = time.perf_counter()
            lazy = PairedData.from_anndatas(
                paths, kinds, label_key=data.label_key, batch_key=data.batch_key, backed=True
            )
            bdm = PairedDataModule(lazy, seed=0, batch_size=args.batch_sizes[0])
            bdm.setup()
            step("backed: open + checks + setup", time.perf_counter() - t)
            bdm.sparse_batches = True
            _time_loader(bdm, "backed", args, out)
    _time_steps(dm, args, out)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def _time_loader(dm: Any, mode: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Full epochs of the train loader at each batch size (cells/s: median and best)."""
    import numpy as np

    for batch_size in args.batch_sizes:
        dm.batch_size = batch_size
        loader = dm.train_dataloader()
        times = []
        for _ in range(args.repeats):  # each epoch reshuffles; all cells, every key
            n_cells = n_batches = 0
            t = time.perf_counter()
            for batch in loader:
                n_cells += len(batch["index"])
                n_batches += 1
            times.append(time.perf_counter() - t)
        median, best = float(np.median(times)), min(times)
        out["epochs"].append(
            {
                "mode": mode,
                "batch_size": batch_size,
                "batches": n_batches,
                "cells": n_cells,
                "seconds": [round(x, 3) for x in times],
                "median_s": round(median, 3),
                "cells_per_s": round(n_cells / median, 1),
                "best_cells_per_s": round(n_cells / best, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
        print(
            f"  {out['dataset']} ({mode}): epochs at batch {batch_size}: {n_cells} cells in "
            f"{', '.join(f'{x:.2f}' for x in times)} s (median {n_cells / median:,.0f} cells/s)",
            flush=True,
        )


def _time_steps(dm: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """``--steps`` MultiVI-style training steps (loader included) at batch size 128."""
    import lightning as L

    from mmint.models import build_model

    dm.batch_size, dm.sparse_batches = 128, None
    L.seed_everything(0, verbose=False)
    model = build_model("multivi", dm.spec)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=args.steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - t
    out["training"] = {
        "model": "multivi",
        "batch_size": 128,
        "steps": args.steps,
        "seconds": round(seconds, 2),
        "cells_per_s": round(args.steps * 128 / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(f"  {out['dataset']}: {args.steps} training steps in {seconds:.1f} s", flush=True)


# ---------------------------------------------------------------------- report (parent)
def _describe(r: dict[str, Any]) -> str:
    mods = ", ".join(
        f"{m} {v['kind']} {v['features']:,} features ({v['nnz']:,} non-zeros)"
        for m, v in r["modalities"].items()
    )
    return f"{r['n_cells']:,} cells ({r['n_train']:,} train); {mods}"


def report(results: list[dict[str, Any]], info: dict[str, Any], command: str, wall: float) -> str:
    lines = [
        "# Data layer throughput",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `benchmarks/data_throughput.py`.",
        "",
        f"- machine: {info['nproc']} CPU cores available ({info['cpu']}), {info['ram_gb']} GB RAM, "
        f"1-min load average {info['load_1min']} at start (a shared machine: other jobs ran "
        "at the same time, so times are upper bounds)",
        f"- software: Python {info['python']}, torch {info['torch']} (1 thread), numpy "
        f"{info['numpy']}, scipy {info['scipy']}, anndata {info['anndata']}, lightning "
        f"{info['lightning']}",
        f"- command: `{command}` (total {wall:.0f} s)",
        f"- cells/s: full epochs of `PairedDataModule.train_dataloader()` (shuffled dict "
        "batches with every key of the contracts; wide sparse inputs as sparse batches; "
        "`backed`: read from `.h5ad` files in file blocks, `data.backed=true`), "
        f"train cells / seconds, {info['repeats']} epochs per batch size (median and best: "
        "single epochs are noisy on a loaded machine). Peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` of a "
        "fresh process per dataset, after the step (a running maximum).",
        "",
        "## Train loader",
        "",
        "| dataset | reading | batch size | batches | cells | seconds per epoch (each run) | "
        "cells/s (median) | cells/s (best) | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        for e in r["epochs"]:
            lines.append(
                f"| {r['label']} | {e.get('mode', 'in memory')} | {e['batch_size']} | "
                f"{e['batches']} | {e['cells']:,} | "
                f"{', '.join(f'{x:.2f}' for x in e['seconds'])} | {e['cells_per_s']:,.0f} | "
                f"{e['best_cells_per_s']:,.0f} | {e['peak_rss_mb']:,.0f} |"
            )
    lines += [
        "",
        "## Beside a training step",
        "",
        "| dataset | model | batch size | steps | seconds | cells/s (loader included) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        tr = r.get("training")
        if tr:
            lines.append(
                f"| {r['label']} | {tr['model']} | {tr['batch_size']} | {tr['steps']} | "
                f"{tr['seconds']:.1f} | {tr['cells_per_s']:,.0f} |"
            )
    lines += ["", "## Preparation steps", "", "| dataset | step | seconds | peak RSS after (MB) |"]
    lines.append("|---|---|---:|---:|")
    for r in results:
        for name, s in r["steps"].items():
            lines.append(
                f"| {r['label']} | {name} | {s['seconds']:.2f} | {s['peak_rss_mb']:,.0f} |"
            )
    lines += ["", "## Datasets", ""]
    for r in results:
        sparse = ", ".join(
            f"{m}: {'sparse' if v else 'dense'}" for m, v in r["input_sparse"].items()
        )
        lines.append(f"- **{r['label']}**: {_describe(r)}. Model inputs after setup: {sparse}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--peaks", type=int, default=100_000)
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=3, help="epochs per batch size")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed")
    parser.add_argument("--no-backed", dest="backed", action="store_false")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--child", choices=["snareseq", "sim"], help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run_one(args.child, args)
        args.child_out.write_text(json.dumps(result))
        return

    command = " ".join(["python benchmarks/data_throughput.py", shlex.join(sys.argv[1:])]).strip()
    info = machine(("torch", "numpy", "scipy", "anndata", "lightning"))
    info["ram_gb"] = round(info["ram_gib"], 1)
    info["repeats"] = args.repeats
    env = dict(os.environ)
    env.setdefault("MMINT_DATA_DIR", str((REPO / ".." / "shared" / "data").resolve()))
    todo = []
    if not args.skip_real:
        todo.append(("snareseq", f"{REAL} (real)"))
    if not args.skip_sim:
        todo.append(
            (
                "sim",
                f"simulated {args.cells // 1000}k cells x {args.peaks // 1000}k peaks "
                f"(+{args.genes} genes)",
            )
        )
    results = []
    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for which, label in todo:
        print(f"{label}:", flush=True)
        child_out = args.out.with_suffix(f".{which}.json.tmp")
        cmd = [sys.executable, __file__, "--child", which, "--child-out", str(child_out)]
        cmd += ["--cells", str(args.cells), "--genes", str(args.genes), "--peaks", str(args.peaks)]
        cmd += ["--sparsity", str(args.sparsity), "--repeats", str(args.repeats)]
        cmd += ["--batch-sizes", *map(str, args.batch_sizes), "--steps", str(args.steps)]
        cmd += [] if args.backed else ["--no-backed"]
        subprocess.run(cmd, check=True, env=env, cwd=REPO)
        result = json.loads(child_out.read_text())
        child_out.unlink()
        result["label"] = label
        results.append(result)
    text = report(results, info, command, time.perf_counter() - start)
    args.out.write_text(text)
    print()
    print(text)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
