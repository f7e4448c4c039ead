"""Where a training epoch goes, in process CPU seconds, one torch thread; three modes.

- parts (default; ``results/profile.md``): MultiVI-style (MULTIVI's parity settings) and
  CVQVAE-style fits on SNARE-seq through ``mmint.fit.train_model``, one process per model;
  each part is timed by wrapping its call (``PARTS``: forward = ``module.loss``, backward =
  ``manual_backward``, optimiser step, ``log``, data between batches, validation, curves =
  ``IntegrationMetrics``, ``save_checkpoint``, other = the rest), plus the host syncs
  (``aten::_local_scalar_dense`` calls) per training step on three batches;
- ``--operators`` (``results/unitednet_overhead.md``): one warm-up epoch of ``--model`` on
  ``--data``, then ``--epochs`` under ``torch.profiler``: operators by self CPU time;
- ``--memory fit|accumulator`` (profile.md, "Why the model held 2.9 GB"): peak RSS after the
  MultiVI parity fit's setup and 10 training batches (``--batches sparse|dense``), or around
  one ``PredictionAccumulator.update`` of a 1,024 x 25,734 batch.

Usage::

    MMINT_DATA_DIR=... python benchmarks/profile_epochs.py --models multivi cvqvae --epochs 3
    MMINT_DATA_DIR=... python benchmarks/profile_epochs.py --operators --rows 45
    MMINT_DATA_DIR=... python benchmarks/profile_epochs.py --memory fit --batches sparse
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import child, emit, fit_setup, load, peak_rss_mb, table, trainer

SNARE = "snareseq_mouse_cortex_chen2019"
OTHER = "other (loop, callbacks, step glue)"
PARTS = ["forward", "backward", "optimizer", "logging", "data", OTHER, "validation", "curves"]
BASE = ["seed=0", "logger=none", "trainer=cpu", "trainer.num_threads=1"]
#: MULTIVI's parity settings (scvi-tools defaults; ``benchmarks/multivi_parity.py`` at d229c92)
MULTIVI = """model.batch_size=128 model.n_hidden=128 model.n_latent=20 model.lr=1e-4
model.weight_decay=1e-3 model.eps=1e-8 model.n_epochs_kl_warmup=50 model.dropout_rate=0.1
model.n_layers_encoder=2 model.n_layers_decoder=2 model.gene_likelihood=zinb model.library=learned
model.protein_mixture=true model.modality_weights=equal model.modality_penalty=jeffreys
model.adversarial_mixing=true model.adversary_kappa=1.0 eval.kbet=false eval.leiden=true""".split()


def overrides(model: str, epochs: int) -> list[str]:
    """The fit's overrides: MultiVI with MULTIVI's parity settings, others with their own."""
    extra = MULTIVI if model == "multivi" else []
    over = [f"data={SNARE}", f"model={model}", *BASE, f"model.max_epochs={epochs}", *extra]
    return [*over, "trainer.enable_progress_bar=false"]


class Clock:
    """Process CPU seconds per part, per epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.current, self.depth = defaultdict(float), 0

    @contextlib.contextmanager
    def part(self, name: str, always: bool = False):
        # nested parts (a log inside a forward, a forward inside validation) count once, in
        # the outer part; ``always`` parts are counted whatever they are nested in
        if self.depth and not always:
            yield
            return
        self.depth, start = self.depth + 1, time.process_time()
        try:
            yield
        finally:
            self.current[name] += time.process_time() - start
            self.depth -= 1

    def wrap(self, obj: Any, attr: str, name: str, always: bool = False) -> None:
        """Time every call of ``obj.attr`` as ``name``."""
        inner = getattr(obj, attr)

        def timed(*args, **kwargs):
            with self.part(name, always):
                return inner(*args, **kwargs)

        setattr(obj, attr, timed)


def instrument(model, clock: Clock) -> None:
    """Wrap the model's forward, backward, optimiser, logging, curves and checkpoint calls."""
    import lightning as L
    import torch

    from mmint.callbacks import IntegrationMetrics

    clock.wrap(model.module, "loss", "forward")
    if getattr(model, "adversary", None) is not None:
        clock.wrap(model.adversary, "loss", "forward")
    clock.wrap(model, "manual_backward", "backward")
    clock.wrap(model, "log", "logging")
    for cls in {torch.optim.Adam, torch.optim.AdamW}:
        clock.wrap(cls, "step", "optimizer")
        clock.wrap(cls, "zero_grad", "optimizer")
    clock.wrap(IntegrationMetrics, "on_validation_epoch_end", "curves", always=True)
    clock.wrap(L.Trainer, "save_checkpoint", "checkpoint")


def epoch_callback(clock: Clock):
    """A callback that closes one row of ``clock`` per epoch (data, validation, other)."""
    import lightning as L

    class EpochParts(L.Callback):
        def __init__(self) -> None:
            self.start = self.batch_end = self.val_start = None
            self.rss: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._close()
            clock.current = defaultdict(float)
            self.start = self.batch_end = time.process_time()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            clock.current["data"] += time.process_time() - self.batch_end

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.batch_end = time.process_time()

        def on_validation_epoch_start(self, trainer, pl_module) -> None:
            self.val_start = time.process_time()
            clock.depth += 1

        def on_validation_end(self, trainer, pl_module) -> None:
            # after every callback's on_validation_epoch_end (the curves) and before the
            # checkpoint callbacks' own on_validation_end (this callback is added first)
            clock.current["validation"] += time.process_time() - self.val_start
            clock.depth -= 1

        def _close(self) -> None:
            # an epoch ends when the next starts (or training ends): the checkpoint callbacks
            # save after every other callback's on_train_epoch_end
            if self.start is None:
                return
            total, row = time.process_time() - self.start, dict(clock.current)
            # the curves run inside the validation hooks: not part of validation proper
            row["validation"] = row.get("validation", 0.0) - row.get("curves", 0.0)
            row[OTHER], row["total"] = max(0.0, total - sum(row.values())), total
            clock.epochs.append(row)
            self.rss.append(peak_rss_mb())
            self.start = None

        def on_train_end(self, trainer, pl_module) -> None:
            self._close()

    return EpochParts()


def count_syncs(model, dm, n_batches: int = 3) -> float:
    """``aten::_local_scalar_dense`` calls per training step (host syncs on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    it = iter(dm.train_dataloader())
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts
    model.manual_backward = lambda loss: loss.backward()
    model.log = lambda *a, **k: None
    model._trainer = None
    model.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(n_batches):
            model.training_step(next(it), i)
    calls = {e.key: e.count for e in prof.key_averages()}
    return calls.get("aten::_local_scalar_dense", 0) / n_batches


def parts(model_name: str, epochs: int) -> dict[str, Any]:
    """One fit through ``train_model`` with the parts timed; per-epoch rows."""
    import mmint.fit as fit_mod

    t0 = time.process_time()
    cfg, (_, max_epochs, _, dm, model) = fit_setup(overrides(model_name, epochs))
    setup_cpu, clock, original = time.process_time() - t0, Clock(), fit_mod.Timing
    instrument(model, clock)
    rows = epoch_callback(clock)

    class Timing(original):  # the pipeline's own timing callback, which adds the parts first
        def setup(self, trainer, pl_module, stage) -> None:
            if rows not in trainer.callbacks:
                trainer.callbacks.insert(0, rows)

    fit_mod.Timing = Timing
    with tempfile.TemporaryDirectory() as tmp:
        start, wall = time.process_time(), time.perf_counter()
        fit_mod.train_model(model, dm, cfg, Path(tmp), int(max_epochs), [], None)
        fit_cpu, fit_wall = time.process_time() - start, time.perf_counter() - wall
    fit_mod.Timing = original
    return {
        "model": model_name,
        "n_train": int(len(dm.split["train"])),
        "batches_per_epoch": len(dm.train_dataloader()),
        "setup_cpu_s": setup_cpu,
        "fit_cpu_s": fit_cpu,
        "fit_wall_s": fit_wall,
        "epochs": clock.epochs,
        "peak_rss_mb_by_epoch": rows.rss,
        "item_calls_per_step": count_syncs(model, dm),
        "load": load(),
    }


def markdown(result: dict[str, Any]) -> str:
    """One table: CPU seconds per part in each epoch (epoch 1 has the epoch-0 curves)."""
    head = ["part", *(f"epoch {i + 1}" for i in range(len(result["epochs"])))]
    parts = [*PARTS, "checkpoint", "total"]
    return "\n".join(
        table(head, [[p, *(f"{e.get(p, 0.0):.2f}" for e in result["epochs"])] for p in parts])
    )


def operators(args: argparse.Namespace) -> None:
    """``--epochs`` epochs after one warm-up under ``torch.profiler``; the operator table."""
    import lightning as L
    from torch.profiler import ProfilerActivity, profile

    _, (_, _, _, dm, model) = fit_setup([f"data={args.data}", f"model={args.model}", *BASE])

    class Profiled(L.Callback):
        prof, cpu, steps = profile(activities=[ProfilerActivity.CPU]), 0.0, 0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                self.prof.start()
                self.cpu = time.process_time()

        def on_train_batch_end(self, trainer, *a) -> None:
            self.steps += trainer.current_epoch >= 1

        def on_train_end(self, trainer, pl_module) -> None:
            self.cpu = time.process_time() - self.cpu
            self.prof.stop()

    cb = Profiled()
    trainer(max_epochs=1 + args.epochs, callbacks=[cb]).fit(model, datamodule=dm)
    events = cb.prof.key_averages()
    print(
        events.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40)
    )
    syncs = sum(e.count for e in events if e.key in ("aten::item", "aten::_local_scalar_dense"))
    print(f"training steps profiled: {cb.steps}; host syncs (item/_local_scalar_dense): {syncs}")
    print(f"CPU seconds of the profiled epoch(s), profiler overhead included: {cb.cpu:.2f}")


def memory(args: argparse.Namespace) -> None:
    """Peak RSS probes: the parity fit's setup and 10 batches, or one accumulator update."""
    if args.memory == "accumulator":
        import numpy as np

        from mmint.metrics.prediction import PredictionAccumulator

        rng = np.random.default_rng(0)
        x = (rng.random((1024, 25734)) < 0.02).astype(np.float32)
        p = rng.random((1024, 25734)).astype(np.float32)
        before = peak_rss_mb()
        PredictionAccumulator(compute_auroc=True).update(x, p)
        print(f"accumulator update: peak RSS {before:.0f} -> {peak_rss_mb():.0f} MB", flush=True)
        return
    _, (_, _, _, dm, model) = fit_setup(overrides("multivi", 1))
    print(f"setup: peak RSS {peak_rss_mb():.0f} MB", flush=True)
    if args.batches and hasattr(dm, "sparse_batches"):
        dm.sparse_batches = args.batches == "sparse"
    start = time.process_time()
    trainer(max_epochs=1, limit_train_batches=10, limit_val_batches=0).fit(model, datamodule=dm)
    cpu = time.process_time() - start
    print(f"10 training batches: peak RSS {peak_rss_mb():.0f} MB, {cpu:.1f} CPU s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["multivi", "cvqvae"], help="parts")
    parser.add_argument("--epochs", type=int, default=None, help="parts: 3; operators: 1")
    parser.add_argument("--out", type=Path, default=None, help="parts: JSON of every row")
    parser.add_argument("--operators", action="store_true", help="operator table mode")
    parser.add_argument("--model", default="unitednet_patchseq", help="operators")
    parser.add_argument("--data", default="patchseq_gouwen2020", help="operators")
    parser.add_argument("--rows", type=int, default=30, help="operators: rows shown")
    parser.add_argument("--memory", choices=["fit", "accumulator"], help="memory probe mode")
    parser.add_argument("--batches", choices=["sparse", "dense"], help="memory fit: batches")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.epochs = args.epochs or (1 if args.operators else 3)
    import torch

    torch.set_num_threads(1)
    if args.operators or args.memory:
        operators(args) if args.operators else memory(args)
        return
    if args.child:
        emit(parts(args.child, args.epochs))
        return
    results = []
    for m in args.models:  # one process per model: peak RSS is per fit
        results.append(r := child([__file__, "--child", m, "--epochs", str(args.epochs)]))
        print(f"## {m}: {r['n_train']} training cells, {r['batches_per_epoch']} batches")
        print(f"fit CPU {r['fit_cpu_s']:.1f} s, wall {r['fit_wall_s']:.1f} s, load {r['load']}, ")
        rss = ", ".join(f"{x:.0f}" for x in r["peak_rss_mb_by_epoch"])
        print(f"peak RSS by epoch {rss} MB, item() calls per step {r['item_calls_per_step']:.0f}")
        print(markdown(r), flush=True)
    if args.out:
        from mmint.io import write_json

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, results)


if __name__ == "__main__":
    main()
