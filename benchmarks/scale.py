"""Growth curves: training time per epoch, evaluation time and peak memory against the number
of cells, one process per row, one thread.

Rows (``--rows``, ``model:dataset:n_cells``):

- ``dataset = liu``: ``pbmc_covid_cite_liu2021`` (rna 1,000 genes + adt 192 antibodies, clr)
  subsampled to ``n_cells`` cells, stratified by ``cell_type`` and seeded
  (:func:`mmint.metrics.subsample.stratified_subsample`, seed 0); ``n_cells`` at or above the
  30,534 cells of the file keeps them all.
- ``dataset = sim`` (multiome-like): mmint's simulator with rna counts (``--sim-genes``) and
  binary peaks (``--sim-peaks``, ``--sim-sparsity``), 8 types, 2 batches, seed 0.
- ``dataset = cite`` (CITE-like): the simulator with rna counts (``--sim-genes``) and adt counts
  (``--sim-proteins``, clr), 8 types, 2 batches, seed 0.

Each row runs in a fresh child process (``--child``) that builds the data module (random
80/10/10 split, seed 0), trains the model ``--epochs`` epochs through Lightning without
checkpoints (the pca floor: its one fit) and scores the test cells with
``mmint.evaluate.evaluate`` (scIB on, kBET off, Leiden on). Seconds are process CPU seconds
(``time.process_time``, all threads of the process): ``seconds_per_epoch`` is the mean over the
training epochs (validation excluded; for pca the fit), ``eval_seconds`` is the whole
evaluation, scib-metrics' JIT compilation included (a fresh process compiles once). Peak RSS is
the child's ``ru_maxrss`` as returned by ``os.wait4`` to the parent. The load average of the
machine at the start and end of each row is recorded beside its timings.

Results go to ``<out>/scale.csv`` (rows replaced by model, dataset and n_cells, so runs can be
added a few at a time) and ``<out>/scale.md`` (the table and, per model and dataset, the
exponent ``b`` of ``seconds ~ n_cells^b`` fitted by least squares on log-log).

Usage::

    MMINT_DATA_DIR=../shared/data python benchmarks/scale.py \\
        --rows pca:liu:3000 multivi:liu:3000 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
LIU = "pbmc_covid_cite_liu2021"
COLUMNS = [
    "model",
    "dataset",
    "n_cells",
    "n_features",
    "seconds_per_epoch",
    "eval_seconds",
    "peak_rss_mb",
    "epochs",
    "n_train",
    "n_test",
    "cpu_seconds_total",
    "wall_seconds",
    "load_start",
    "load_end",
    "ari_kmeans",
    "scib_total",
    "status",
    "note",
]
KEY = ["model", "dataset", "n_cells"]
#: integer columns (pandas reads them as float when a failed row leaves them empty)
INTEGERS = ["n_cells", "n_features", "epochs", "n_train", "n_test"]
#: one thread everywhere: torch (set in the child), BLAS / OpenMP and XLA (scib-metrics' jax)
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def load_average() -> float:
    """The machine's 1-minute load average."""
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------- child
def dataset_name(kind: str, args: argparse.Namespace) -> str:
    """The ``dataset`` column of a row."""
    if kind == "cite":
        return f"simulated_{args.sim_genes}genes_{args.sim_proteins}proteins"
    return LIU if kind == "liu" else f"simulated_{args.sim_genes}genes_{args.sim_peaks}peaks"


def dataset(kind: str, n_cells: int, args: argparse.Namespace) -> tuple[Any, str, dict | None]:
    """``(PairedData, dataset name, transforms)`` of a row."""
    import anndata as ad

    from mmint.data import PairedData, dataset_config, load_dataset
    from mmint.data.registry import _shared_folder
    from mmint.metrics.subsample import stratified_subsample

    if kind == "liu":
        cfg = dataset_config(LIU)
        folder = _shared_folder(LIU)
        first = ad.read_h5ad(folder / "rna.h5ad", backed="r")
        labels = first.obs[cfg["label_key"]].astype(str).to_numpy()
        first.file.close()
        if n_cells >= len(labels):
            return load_dataset(LIU), LIU, cfg["transforms"]
        keep, _ = stratified_subsample(labels, n_cells, seed=0)
        # read backed: only the kept rows enter memory (peak RSS is the subsample's)
        adatas = {
            m: ad.read_h5ad(folder / f"{m}.h5ad", backed="r")[keep].to_memory()
            for m in cfg["kinds"]
        }
        data = PairedData.from_anndatas(
            adatas, cfg["kinds"], label_key=cfg["label_key"], batch_key=cfg["batch_key"]
        )
        return data, LIU, cfg["transforms"]
    if kind in ("sim", "cite"):
        from mmint.data.simulate import simulate

        second = ("atac", ("binary", args.sim_peaks))
        if kind == "cite":
            second = ("adt", ("counts", args.sim_proteins))
        # generated in blocks of rows: no dense cells x features matrix
        sim = simulate(
            n_cells=n_cells,
            modalities={"rna": ("counts", args.sim_genes), second[0]: second[1]},
            sparsity=args.sim_sparsity,
            seed=0,
        )
        data = PairedData.from_anndatas(
            sim.adatas, sim.kinds, label_key="cell_type", batch_key="batch"
        )
        del sim
        transforms = {"adt": "clr"} if kind == "cite" else None
        return data, dataset_name(kind, args), transforms
    raise SystemExit(f"error: unknown dataset '{kind}' (--rows) - use liu, sim or cite")


def child(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fit and evaluate one row in this process; the measured numbers."""
    import lightning as L
    import torch
    from omegaconf import OmegaConf
    from threadpoolctl import threadpool_limits

    from mmint.config import config_dir
    from mmint.data import PairedDataModule
    from mmint.evaluate import evaluate
    from mmint.fit import _split_model_config
    from mmint.models import build_model

    torch.set_num_threads(1)
    threadpool_limits(1)
    model_name, kind, n = row.split(":")
    data, name, transforms = dataset(kind, int(n), args)
    model_cfg = OmegaConf.to_container(
        OmegaConf.load(config_dir() / "model" / f"{model_name}.yaml")
    )
    _, _, batch_size, hparams = _split_model_config(model_cfg)
    L.seed_everything(0, verbose=False)
    dm = PairedDataModule(data, seed=0, batch_size=batch_size, transforms=transforms)
    dm.setup()
    L.seed_everything(0, verbose=False)
    model = build_model(model_name, dm.spec, **hparams)
    out: dict[str, Any] = {
        "model": model_name,
        "dataset": name,
        "n_cells": int(data.n_cells),
        "n_features": int(sum(m.n_features for m in data.modalities.values())),
        "n_train": int(len(dm.cells("train"))),
        "n_test": int(len(dm.cells("test"))),
    }
    if model.trains_in_epochs:
        clock = CpuClock()
        trainer = L.Trainer(
            max_epochs=args.epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            accelerator="cpu",
            callbacks=[clock],
        )
        trainer.fit(model, datamodule=dm)
        out["epochs"] = len(clock.seconds)
        out["seconds_per_epoch"] = float(np.mean(clock.seconds))
    else:
        start = time.process_time()
        model.fit_data(dm)
        out["epochs"] = None
        out["seconds_per_epoch"] = time.process_time() - start
    start = time.process_time()
    scores = evaluate(model, dm, "test", scib=True, kbet=False, leiden=True, seed=0)
    out["eval_seconds"] = time.process_time() - start
    out["ari_kmeans"] = scores.get("ari_kmeans")
    out["scib_total"] = (scores.get("scib") or {}).get("total")
    return out


def _cpu_clock_class():
    import lightning as L

    class Clock(L.Callback):
        """Process CPU seconds of each training epoch, validation excluded."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start: float | None = None

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start = time.process_time()

        def _stop(self) -> None:
            if self._start is not None:
                self.seconds.append(time.process_time() - self._start)
                self._start = None

        def on_validation_epoch_start(self, trainer, pl_module) -> None:
            self._stop()  # Lightning validates inside the training epoch

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self._stop()

    return Clock


def CpuClock():  # noqa: N802 - a class built on first use
    """A Lightning callback timing training epochs in process CPU seconds."""
    return _cpu_clock_class()()


# ------------------------------------------------------------------------------ parent
def run_row(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one row in a child process; its numbers plus the child's peak RSS and CPU."""
    model_name, kind, n = row.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--child", row, "--result", str(result)]
        cmd += ["--epochs", str(args.epochs), "--sim-genes", str(args.sim_genes)]
        cmd += ["--sim-peaks", str(args.sim_peaks), "--sim-sparsity", str(args.sim_sparsity)]
        cmd += ["--sim-proteins", str(args.sim_proteins)]
        log = Path(tmp) / "child.log"
        load_start, wall = load_average(), time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                cmd, env={**os.environ, **ONE_THREAD}, stdout=fh, stderr=subprocess.STDOUT
            )
            status, note = "ok", ""
            deadline = wall + args.timeout_s
            while True:
                pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, code, usage = os.wait4(proc.pid, 0)
                    status, note = "timeout", f"killed after {args.timeout_s} s wall"
                    break
                time.sleep(0.5)
        proc.returncode = code  # reaped by wait4: keep Popen from waiting again
        row_out: dict[str, Any] = {
            "model": model_name,
            "dataset": dataset_name(kind, args),
            "n_cells": int(n),
        }
        if result.exists():
            row_out.update(json.loads(result.read_text()))
        elif status == "ok":
            tail = log.read_text().strip().splitlines()[-3:]
            status, note = "failed", " / ".join(tail)[-300:]
    row_out.update(
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
        cpu_seconds_total=usage.ru_utime + usage.ru_stime,
        wall_seconds=time.perf_counter() - wall,
        load_start=load_start,
        load_end=load_average(),
        status=status,
        note=note,
    )
    return row_out


def exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and dataset, the least-squares slope of log(value) on log(n_cells) for
    seconds per epoch, evaluation seconds and peak RSS (rows with status ok, at least 2
    sizes)."""
    ok = table[table["status"] == "ok"]
    rows = []
    for (model, data), sub in ok.groupby(["model", "dataset"], sort=False):
        sub = sub.sort_values("n_cells")
        if sub["n_cells"].nunique() < 2:
            continue
        x = np.log(sub["n_cells"].to_numpy(float))
        rec = {"model": model, "dataset": data, "sizes": ", ".join(map(str, sub["n_cells"]))}
        for col in ("seconds_per_epoch", "eval_seconds", "peak_rss_mb"):
            y = np.log(sub[col].to_numpy(float))
            rec[col] = float(np.polyfit(x, y, 1)[0])
        rows.append(rec)
    return pd.DataFrame(rows)


def write_markdown(table: pd.DataFrame, path: Path, notes: list[str]) -> None:
    """``scale.md``: the measured rows and the fitted exponents."""
    from mmint.benchmark.report import fmt, markdown_table
    from mmint.io import atomic_write

    rows = [
        [
            r["model"],
            r["dataset"],
            str(int(r["n_cells"])),
            str(int(r["n_features"])) if pd.notna(r["n_features"]) else "-",
            fmt(r["seconds_per_epoch"], 1),
            fmt(r["eval_seconds"], 1),
            fmt(r["peak_rss_mb"], 0),
            fmt(r["load_start"], 1) + " / " + fmt(r["load_end"], 1),
            r["status"] + (f": {r['note']}" if isinstance(r["note"], str) and r["note"] else ""),
        ]
        for _, r in table.iterrows()
    ]
    header = [
        "model",
        "dataset",
        "n_cells",
        "n_features",
        "CPU s / epoch",
        "eval CPU s",
        "peak RSS MB",
        "load start / end",
        "status",
    ]
    exp = exponents(table)
    exp_rows = [
        [
            r["model"],
            r["dataset"],
            r["sizes"],
            fmt(r["seconds_per_epoch"], 2),
            fmt(r["eval_seconds"], 2),
            fmt(r["peak_rss_mb"], 2),
        ]
        for _, r in exp.iterrows()
    ]
    text = [
        "# Growth in the number of cells",
        "",
        "Written by `benchmarks/scale.py` (its docstring has the protocol). One process per row, "
        "one thread; seconds are process CPU seconds; peak RSS is the child's `ru_maxrss`. The "
        "load columns are the machine's 1-minute load average at the start and end of the row "
        "(2 cores shared with other jobs: CPU seconds are less sensitive to it than wall time, "
        "not immune).",
        "",
        markdown_table(header, rows),
        "",
        "## Fitted exponents",
        "",
        "Slope b of log(value) = a + b log(n_cells), least squares over the sizes listed "
        "(b = 1: linear).",
        "",
        markdown_table(
            ["model", "dataset", "n_cells", "CPU s / epoch", "eval CPU s", "peak RSS"], exp_rows
        )
        if exp_rows
        else "(fewer than two sizes per model so far)",
        "",
    ]
    if notes:
        text += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    atomic_write(path, "\n".join(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="*", default=[])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sim-genes", type=int, default=2000)
    parser.add_argument("--sim-peaks", type=int, default=100_000)
    parser.add_argument("--sim-sparsity", type=float, default=0.97)
    parser.add_argument("--sim-proteins", type=int, default=200)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--notes", type=Path, default=None, help="a text file, one note a line")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        out = child(args.child, args)
        args.result.write_text(json.dumps(out))
        return 0
    from mmint.io import atomic_write

    csv = args.out / "scale.csv"
    table = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)
    for row in args.rows:
        res = run_row(row, args)
        print(json.dumps(res), flush=True)
        new = pd.DataFrame([res]).reindex(columns=COLUMNS)
        same = (table[KEY].astype(str) == new[KEY].iloc[0].astype(str).to_numpy()).all(axis=1)
        table = pd.concat([d for d in (table[~same], new) if not d.empty], ignore_index=True)
        table = table.sort_values(["dataset", "model", "n_cells"], kind="stable")
        atomic_write(csv, table.to_csv(index=False))
    table[INTEGERS] = table[INTEGERS].apply(pd.to_numeric).astype("Int64")
    atomic_write(csv, table.to_csv(index=False))
    notes = args.notes.read_text().strip().splitlines() if args.notes else []
    write_markdown(table.reset_index(drop=True), args.out / "scale.md", notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
