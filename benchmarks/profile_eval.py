"""Fixed cost of evaluation in fresh processes: the first with empty caches, the next warm.

Two modes:

- default: scIB scores of one 10,000-cell embedding (kBET off): each process times
  :func:`mmint.metrics.scib.scib_scores` (wall and CPU seconds) on a synthetic embedding:
  10 Gaussian clusters in 20 dimensions, 2 batches.
- ``--evaluate``: the whole of :func:`mmint.evaluate.evaluate` (groups with KMeans and Leiden,
  predictions, alignment, scIB with kBET off, modality mixing) on a 3,001-cell test set: the
  default synthetic dataset with ``--cells`` cells (default 6,000), random split 0.4 / 0.1 /
  0.5, scored with the PCA floor (30 PCs per modality, fitted first, not timed). Per process:
  ``total`` = CPU seconds of importing :mod:`mmint.evaluate` plus the first ``evaluate`` call;
  ``arithmetic`` = the fastest of ``--repeats`` more calls in the same process (imports done,
  code compiled); ``overhead = total - arithmetic``. ``--profile`` prints the first call's
  cProfile (cumulative). The issue-24 target: overhead <= 8 CPU s with warm caches.

A process runs with ``MMINT_JAX_CACHE`` in a fresh temporary folder (the first process fills
it). The scores must be identical in every process. The code measured is whatever ``mmint``
the interpreter imports, so running this file with another checkout's interpreter measures
that checkout.

Usage::

    python benchmarks/profile_eval.py --cells 10000 --runs 3
    python benchmarks/profile_eval.py --evaluate --runs 2 [--out-csv benchmarks/results/speed.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(n_cells: int) -> None:
    import numpy as np

    from mmint.metrics.scib import scib_scores

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_cells)
    centres = rng.normal(0, 3, (10, 20))
    batches = rng.integers(0, 2, n_cells)
    z = (centres[labels] + rng.normal(0, 1, (n_cells, 20)) + 0.3 * batches[:, None]).astype(
        np.float32
    )
    wall, cpu = time.perf_counter(), time.process_time()
    scores = scib_scores(z, labels.astype(str), batches.astype(str), kbet=False)
    out = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "load": os.getloadavg()[0],
        "scores": {k: v for k, v in scores.items() if isinstance(v, float)},
    }
    print("RESULT " + json.dumps(out), flush=True)


def _flat(value, prefix: str = "") -> dict:
    """Numbers of a nested score dict, keyed by dotted paths."""
    if isinstance(value, dict):
        out: dict = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    return {prefix: value} if ok else {}


def child_evaluate(n_cells: int, repeats: int, profile: bool) -> None:
    """Fit the PCA floor on the synthetic dataset, then time ``evaluate`` on its test cells."""
    import torch

    torch.set_num_threads(1)
    from mmint.data import PairedDataModule, load_dataset
    from mmint.data.registry import dataset_config
    from mmint.models.pca import PCABaseline

    cfg = dict(dataset_config("synthetic"))
    cfg["simulate"] = {**dict(cfg.get("simulate") or {}), "n_cells": n_cells}
    split = {"kind": "random", "fractions": [0.4, 0.1, 0.5]}
    dm = PairedDataModule(load_dataset(cfg), split=split, seed=0)
    dm.setup()
    model = PCABaseline(dm.spec, n_components=30, seed=0)
    model.fit_data(dm)
    before = set(sys.modules)
    wall, cpu = time.perf_counter(), time.process_time()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    from mmint.evaluate import evaluate

    scores = evaluate(model, dm, "test", seed=0)
    if profile:
        prof.disable()
    total, total_wall = time.process_time() - cpu, time.perf_counter() - wall
    again = []
    for _ in range(repeats):
        cpu = time.process_time()
        evaluate(model, dm, "test", seed=0)
        again.append(time.process_time() - cpu)
    if profile:
        import pstats

        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    out = {
        "n_test": int(len(dm.cells("test"))),
        "total_cpu_s": total,
        "total_wall_s": total_wall,
        "arithmetic_cpu_s": min(again),
        "repeats_cpu_s": again,
        "overhead_cpu_s": total - min(again),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
        "imported": sorted({m.split(".")[0] for m in set(sys.modules) - before}),
        "scores": _flat(scores),
    }
    print("RESULT " + json.dumps(out), flush=True)


def _append_row(path: Path, res: dict, load_start: float, implementation: str) -> None:
    """An evaluation row of ``speed.csv`` (its columns; see ``speed.md`` for their meaning
    in evaluation rows)."""
    row = {
        "model": "pca",
        "dataset": "synthetic_6000",
        "task": "evaluation",
        "implementation": implementation,
        "threads": 1,
        "cells_per_second": res["n_test"] / res["total_cpu_s"],
        "seconds_per_epoch": res["overhead_cpu_s"],
        "peak_rss_mb": res["peak_rss_mb"],
        "wall_seconds_per_epoch": res["total_wall_s"],
        "load_start": load_start,
        "load_end": res["load"],
        "epoch_flops": "",
    }
    with path.open() as f:
        columns = next(csv.reader(f))
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=columns).writerow({c: row.get(c, "") for c in columns})


def main_evaluate(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MMINT_JAX_CACHE": cache, "JAX_PLATFORMS": "cpu"}
        results = []
        for i in range(args.runs):
            cmd = [sys.executable, __file__, "--child", "--evaluate", "--cells", str(args.cells)]
            cmd += ["--repeats", str(args.repeats)] + (["--profile"] if args.profile else [])
            load_start = os.getloadavg()[0]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if args.profile:
                print(out.stderr[-12000:])
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"run {i} failed:\n{out.stderr[-3000:]}")
            res = json.loads(line[0][7:])
            results.append(res)
            state = "empty caches" if i == 0 else "warm caches"
            print(
                f"process {i + 1} ({state}), {res['n_test']} test cells: import + first evaluate "
                f"{res['total_cpu_s']:.2f} CPU s ({res['total_wall_s']:.1f} s wall), "
                f"arithmetic (fastest of {args.repeats} repeats) {res['arithmetic_cpu_s']:.2f} "
                f"CPU s, overhead {res['overhead_cpu_s']:.2f} CPU s; peak RSS "
                f"{res['peak_rss_mb']:.0f} MB; load "
                f"{load_start:.1f} -> {res['load']:.1f}; imported: {', '.join(res['imported'])}",
                flush=True,
            )
        same = all(r["scores"] == results[0]["scores"] for r in results)
        print(f"scores identical in every process: {same}")
        if args.out_csv:
            _append_row(args.out_csv, results[-1], load_start, args.implementation)
            print(f"row appended to {args.out_csv}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=None, help="10,000; --evaluate: 6,000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--evaluate", action="store_true", help="time mmint.evaluate")
    parser.add_argument("--repeats", type=int, default=2, help="--evaluate: warm repeats")
    parser.add_argument("--profile", action="store_true", help="--evaluate: print cProfile")
    parser.add_argument("--out-csv", type=Path, default=None, help="--evaluate: append a row")
    parser.add_argument("--implementation", default="mmint", help="--evaluate: row label")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cells = args.cells or (6000 if args.evaluate else 10000)
    if args.evaluate and args.child:
        child_evaluate(args.cells, args.repeats, args.profile)
        return
    if args.evaluate:
        main_evaluate(args)
        return
    if args.child:
        child(args.cells)
        return
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MMINT_JAX_CACHE": cache, "JAX_PLATFORMS": "cpu"}
        results = []
        for i in range(args.runs):
            cmd = [sys.executable, __file__, "--child", "--cells", str(args.cells)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"run {i} failed:\n{out.stderr[-3000:]}")
            res = json.loads(line[0][7:])
            results.append(res)
            state = "empty cache" if i == 0 else "cache filled"
            print(
                f"process {i + 1} ({state}): scib_scores {res['wall_s']:.1f} s wall, "
                f"{res['cpu_s']:.1f} s CPU, load {res['load']:.1f}",
                flush=True,
            )
        same = all(r["scores"] == results[0]["scores"] for r in results)
        print(f"scores identical in every process: {same}")
        print(json.dumps(results[0]["scores"], indent=1))


if __name__ == "__main__":
    main()
