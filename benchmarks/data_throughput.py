"""Throughput of the shared data layer: cells/s of the train loader (in memory and backed),
beside a training step, and peak memory (``benchmarks/results/data_throughput.md``).

Each dataset runs in a fresh process (its own peak RSS), one torch thread: SNARE-seq
(``snareseq_mouse_cortex_chen2019`` from ``$MMINT_DATA_DIR``) and a simulated
``--cells`` x ``--peaks`` dataset (``mmint.data.simulate.simulate`` with ``--genes`` counts
and ``--peaks`` binary features at ``--sparsity``, ``n_links=0``; its time is reported).
Timed: building the data, ``PairedDataModule.setup``, and ``--repeats`` full epochs of the
train loader (every dict batch; wide sparse modalities as sparse batches) per batch size; the
same read lazily from ``.h5ad`` files (``backed`` rows); and ``--steps`` MultiVI-style
training steps through Lightning at batch size 128 (loader included, no validation), to set
the loader's rate beside what a model consumes. Peak RSS: a running maximum after each step.

Usage::

    MMINT_DATA_DIR=... python benchmarks/data_throughput.py [--cells 100000] [--genes 2000]
        [--peaks 100000] [--sparsity 0.99] [--batch-sizes 128 512] [--repeats 3] [--steps 30]
        [--skip-real] [--skip-sim] [--out benchmarks/results/data_throughput.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import child, command, emit, machine, peak_rss_mb, table, trainer

REAL = "snareseq_mouse_cortex_chen2019"


def run_one(which: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time one dataset in this process and return its numbers."""
    t = time.perf_counter()
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp
    import torch

    from mmint.data import PairedData, PairedDataModule, load_dataset
    from mmint.data.simulate import simulate

    torch.set_num_threads(1)

    out: dict[str, Any] = {"dataset": which, "steps": {}, "epochs": [], "modalities": {}}

    def step(name: str) -> None:
        nonlocal t
        seconds, t = time.perf_counter() - t, time.perf_counter()
        out["steps"][name] = {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        print(f"  {which}: {name} {seconds:.2f} s", file=sys.stderr)

    step("imports (numpy, torch, lightning, mmint)")
    if which == "snareseq":
        data = load_dataset(REAL)
        step("load + checks")
    else:
        mods = {"rna": ("counts", args.genes), "atac": ("binary", args.peaks)}
        sim = simulate(n_cells=args.cells, modalities=mods, n_links=0, sparsity=args.sparsity)
        step("simulate")
        keys = {"label_key": "cell_type", "batch_key": "batch"}
        data = PairedData.from_anndatas(sim.adatas, sim.kinds, **keys)
        del sim
        step("PairedData checks")
    out["n_cells"] = data.n_cells
    for m, mod in data.modalities.items():
        nnz = int(mod.x.nnz if sp.issparse(mod.x) else np.count_nonzero(mod.x))
        out["modalities"][m] = [mod.kind, mod.n_features, nnz]
    dm = PairedDataModule(data, seed=0, batch_size=args.batch_sizes[0])
    dm.setup()
    step("datamodule setup")
    out["n_train"] = len(dm.split["train"])
    out["input_sparse"] = {m: bool(sp.issparse(x)) for m, x in dm.inputs.items()}
    dm.sparse_batches = True  # as a model with sparse first layers reads them
    time_loader(dm, "in memory", args, out)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: Path(tmp) / f"{m}.h5ad" for m in data.modalities}
        for m, mod in data.modalities.items():
            a = ad.AnnData(X=mod.x, obs=data.obs.copy())
            a.var_names = list(mod.var_names)
            a.write_h5ad(paths[m])
        t = time.perf_counter()
        kinds = {m: mod.kind for m, mod in data.modalities.items()}
        keys = {"label_key": data.label_key, "batch_key": data.batch_key}
        lazy = PairedData.from_anndatas(paths, kinds, **keys, backed=True)
        bdm = PairedDataModule(lazy, seed=0, batch_size=args.batch_sizes[0])
        bdm.setup()
        step("backed: open + checks + setup")
        bdm.sparse_batches = True
        time_loader(bdm, "backed", args, out)
    time_steps(dm, args, out)
    return out


def time_loader(dm: Any, mode: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Full epochs of the train loader at each batch size (cells/s: median and best)."""
    import numpy as np

    for batch_size in args.batch_sizes:
        dm.batch_size = batch_size
        loader, times = dm.train_dataloader(), []
        for _ in range(args.repeats):  # each epoch reshuffles; all cells, every key
            n_cells = n_batches = 0
            t = time.perf_counter()
            for batch in loader:
                n_cells, n_batches = n_cells + len(batch["index"]), n_batches + 1
            times.append(time.perf_counter() - t)
        row = [mode, batch_size, n_batches, f"{n_cells:,}", ", ".join(f"{x:.2f}" for x in times)]
        row += [f"{n_cells / float(np.median(times)):,.0f}", f"{n_cells / min(times):,.0f}"]
        out["epochs"].append([*row, f"{peak_rss_mb():,.0f}"])
        print(f"  {out['dataset']} ({mode}): batch {batch_size}: {row[4]} s", file=sys.stderr)


def time_steps(dm: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """``--steps`` MultiVI-style training steps (loader included) at batch size 128."""
    import lightning as L

    from mmint.models import build_model

    dm.batch_size, dm.sparse_batches = 128, None
    L.seed_everything(0, verbose=False)
    model = build_model("multivi", dm.spec)
    t = time.perf_counter()
    fit = trainer(max_epochs=1, limit_train_batches=args.steps, limit_val_batches=0).fit
    fit(model, datamodule=dm)
    seconds = time.perf_counter() - t
    rate = f"{args.steps * 128 / seconds:,.0f}"
    out["training"] = ["multivi", 128, args.steps, f"{seconds:.1f}", rate]


def report(
    results: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace, wall: float
) -> str:
    """The markdown page: machine, loader, training steps, preparation steps, datasets."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = ["dataset", "reading", "batch size", "batches", "cells", "seconds per epoch (each run)"]
    head += ["cells/s (median)", "cells/s (best)", "peak RSS (MB)"]
    lines = [
        "# Data layer throughput",
        "",
        f"Generated {when} by `benchmarks/data_throughput.py`.",
        "",
        f"- machine: {info['nproc']} CPU cores available ({info['cpu']}), {info['ram_gib']:.1f} GB "
        f"RAM, 1-min load average {info['load_1min']} at start (a shared machine: other jobs ran "
        "at the same time, so times are upper bounds)",
        f"- software: Python {info['python']}, torch {info['torch']} (1 thread), numpy "
        f"{info['numpy']}, scipy {info['scipy']}, anndata {info['anndata']}, lightning {info['lightning']}",
        f"- command: `{command('data_throughput.py')}` (total {wall:.0f} s)",
        "- cells/s: full epochs of `PairedDataModule.train_dataloader()` (shuffled dict batches "
        "with every key of the contracts; wide sparse inputs as sparse batches; `backed`: read "
        "from `.h5ad` files in file blocks, `data.backed=true`), train cells / seconds, "
        f"{args.repeats} epochs per batch size (median and best: single epochs are noisy on a "
        "loaded machine). Peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` of a fresh "
        "process per dataset, after the step (a running maximum).",
        "",
        "## Train loader",
        "",
        *table(head, [[r["label"], *e] for r in results for e in r["epochs"]], "llrrrlrrr"),
        "",
        "## Beside a training step",
        "",
    ]
    head = ["dataset", "model", "batch size", "steps", "seconds", "cells/s (loader included)"]
    lines += table(head, [[r["label"], *r["training"]] for r in results], "llrrrr")
    lines += ["", "## Preparation steps", ""]
    rows = [
        [r["label"], name, f"{s['seconds']:.2f}", f"{s['peak_rss_mb']:,.0f}"]
        for r in results
        for name, s in r["steps"].items()
    ]
    lines += [*table(["dataset", "step", "seconds", "peak RSS after (MB)"], rows, "llrr"), ""]
    lines += ["## Datasets", ""]
    for r in results:
        mods = [
            f"{m} {k} {f:,} features ({z:,} non-zeros)" for m, (k, f, z) in r["modalities"].items()
        ]
        sparse = [f"{m}: {'sparse' if v else 'dense'}" for m, v in r["input_sparse"].items()]
        lines.append(
            f"- **{r['label']}**: {r['n_cells']:,} cells ({r['n_train']:,} train); {', '.join(mods)}. "
            f"Model inputs after setup: {', '.join(sparse)}."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_throughput.md"))
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--peaks", type=int, default=100_000)
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=3, help="epochs per batch size")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--child", choices=["snareseq", "sim"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        emit(run_one(args.child, args))
        return
    info = machine(("torch", "numpy", "scipy", "anndata", "lightning"))
    start, results = time.perf_counter(), []
    sim = f"simulated {args.cells // 1000}k cells x {args.peaks // 1000}k peaks"
    todo = [("snareseq", f"{REAL} (real)")] * (not args.skip_real)
    todo += [("sim", f"{sim} (+{args.genes} genes)")] * (not args.skip_sim)
    for which, label in todo:
        print(f"{label}:", flush=True)
        argv = [__file__, *sys.argv[1:], "--child", which]
        results.append({**child(argv), "label": label})
    text = report(results, info, args, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text + f"written: {args.out}")


if __name__ == "__main__":
    main()
