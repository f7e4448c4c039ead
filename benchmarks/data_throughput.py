"""Throughput of the shared data layer (``benchmarks/results/data_throughput.md``): cells/s of
full train-loader epochs (every dict batch, wide sparse modalities as sparse batches; in memory
and read lazily from ``.h5ad`` files, ``backed``) at each batch size, beside ``--steps``
MultiVI-style training steps at batch size 128 (loader included), with the preparation steps
and peak RSS (a running maximum). Each dataset runs in a fresh process, one torch thread:
SNARE-seq (``$MMINT_DATA_DIR``) and a simulated ``--cells`` x ``--peaks`` dataset
(``mmint.data.simulate.simulate``, ``--genes`` counts, ``--sparsity``, ``n_links=0``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import child, emit, header, machine, peak_rss_mb, table, trainer

REAL = "snareseq_mouse_cortex_chen2019"


def run_one(which: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time one dataset in this process and return its rows."""
    t = time.perf_counter()
    import anndata as ad
    import lightning as L
    import numpy as np
    import scipy.sparse as sp
    import torch

    from mmint.data import PairedData, PairedDataModule, load_dataset
    from mmint.data.simulate import simulate
    from mmint.models import build_model

    torch.set_num_threads(1)
    out: dict[str, Any] = {"steps": [], "epochs": [], "modalities": []}

    def step(name: str) -> None:
        nonlocal t
        seconds, t = time.perf_counter() - t, time.perf_counter()
        out["steps"].append([name, f"{seconds:.2f}", f"{peak_rss_mb():,.0f}"])
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
    for m, mod in data.modalities.items():
        nnz = int(mod.x.nnz if sp.issparse(mod.x) else np.count_nonzero(mod.x))
        out["modalities"].append(f"{m} {mod.kind} {mod.n_features:,} features ({nnz:,} non-zeros)")
    dm = PairedDataModule(data, seed=0, batch_size=args.batch_sizes[0])
    dm.setup()
    step("datamodule setup")
    out["cells"] = f"{data.n_cells:,} cells ({len(dm.split['train']):,} train)"
    out["inputs"] = [
        f"{m}: {'sparse' if sp.issparse(x) else 'dense'}" for m, x in dm.inputs.items()
    ]
    time_loader(dm, "in memory", args, out)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: Path(tmp) / f"{m}.h5ad" for m in data.modalities}
        for m, mod in data.modalities.items():
            a = ad.AnnData(X=mod.x, obs=data.obs.copy())
            a.var_names = list(mod.var_names)
            a.write_h5ad(paths[m])
        t, kinds = time.perf_counter(), {m: mod.kind for m, mod in data.modalities.items()}
        keys = {"label_key": data.label_key, "batch_key": data.batch_key}
        lazy = PairedData.from_anndatas(paths, kinds, **keys, backed=True)
        bdm = PairedDataModule(lazy, seed=0, batch_size=args.batch_sizes[0])
        bdm.setup()
        step("backed: open + checks + setup")
        time_loader(bdm, "backed", args, out)
    dm.batch_size, dm.sparse_batches = 128, None  # the model's own declaration
    L.seed_everything(0, verbose=False)
    model = build_model("multivi", dm.spec)
    fit = trainer(max_epochs=1, limit_train_batches=args.steps, limit_val_batches=0).fit
    t = time.perf_counter()
    fit(model, datamodule=dm)
    seconds = time.perf_counter() - t
    rate = f"{args.steps * 128 / seconds:,.0f}"
    out["training"] = ["multivi", 128, args.steps, f"{seconds:.1f}", rate]
    return out


def time_loader(dm: Any, mode: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Full epochs of the train loader at each batch size (cells/s: median and best)."""
    import numpy as np

    dm.sparse_batches = True  # as a model with sparse first layers reads them
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
        print(f"  {mode}: batch {batch_size}: {row[4]} s", file=sys.stderr)


def report(results: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    """The markdown page: machine, loader, training steps, preparation steps, datasets."""
    head = ["dataset", "reading", "batch size", "batches", "cells", "seconds per epoch (each run)"]
    head += ["cells/s (median)", "cells/s (best)", "peak RSS (MB)"]
    lines = [
        *header("Data layer throughput", "data_throughput.py", info),
        "- cells/s: full epochs of `PairedDataModule.train_dataloader()` (shuffled dict batches "
        "with every key of the contracts; wide sparse inputs as sparse batches; `backed`: read "
        "from `.h5ad` files in file blocks, `data.backed=true`), train cells / seconds, "
        f"{args.repeats} epochs per batch size (median and best). Peak RSS: "
        "the high-water mark (`VmHWM`) of a fresh process per dataset, after the step (a running maximum).",
        "\n## Train loader\n",
        *table(head, [[r["label"], *e] for r in results for e in r["epochs"]], "llrrrlrrr"),
        "\n## Beside a training step\n",
    ]
    head = ["dataset", "model", "batch size", "steps", "seconds", "cells/s (loader included)"]
    lines += table(head, [[r["label"], *r["training"]] for r in results], "llrrrr")
    rows = [[r["label"], *s] for r in results for s in r["steps"]]
    head = ["dataset", "step", "seconds", "peak RSS after (MB)"]
    lines += ["\n## Preparation steps\n", *table(head, rows, "llrr"), "\n## Datasets\n"]
    for r in results:
        what = f"{r['cells']}; {', '.join(r['modalities'])}"
        lines.append(
            f"- **{r['label']}**: {what}. Model inputs after setup: {', '.join(r['inputs'])}."
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
    info, results = machine(("torch", "numpy", "scipy", "anndata", "lightning")), []
    sim = f"simulated {args.cells // 1000}k cells x {args.peaks // 1000}k peaks"
    todo = [("snareseq", f"{REAL} (real)")] * (not args.skip_real)
    todo += [("sim", f"{sim} (+{args.genes} genes)")] * (not args.skip_sim)
    for which, label in todo:
        print(f"{label}:", flush=True)
        results.append({**child([__file__, *sys.argv[1:], "--child", which]), "label": label})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text := report(results, info, args))
    print(text + f"written: {args.out}")


if __name__ == "__main__":
    main()
