"""Where a training epoch goes, in process CPU seconds, one torch thread; three modes.

- parts (default; ``results/profile.md``): MultiVI-style (MULTIVI's parity settings) and
  CVQVAE-style fits on SNARE-seq through ``mmint.fit.train_model``, one process per model;
  each of ``PARTS`` timed by wrapping its call, and the host syncs per training step
  (``--set``: extra Hydra overrides, each model with its own settings: ``results/speed.md``);
- ``--operators`` (``results/unitednet_overhead.md``): one warm-up epoch of ``--model`` on
  ``--data``, then ``--epochs`` under ``torch.profiler``: operators by self CPU time;
- ``--memory fit|accumulator`` (profile.md, "Why the model held 2.9 GB"): peak RSS after the
  MultiVI parity fit's setup and 10 training batches (``--batches sparse|dense``), or around
  one ``PredictionAccumulator.update`` of a 1,024 x 25,734 batch.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from common import child, emit, fit_setup, load, peak_rss_mb, table, trainer

SNARE, PATCHSEQ = "snareseq_mouse_cortex_chen2019", "patchseq_gouwen2020"
OTHER = "other (loop, callbacks, step glue)"
#: forward = ``module.loss`` (and the adversary's; UnitedNet has none: under other), backward =
#: ``manual_backward``, optimizer = ``step`` / ``zero_grad``, logging = ``log``, data = between
#: two training batches, validation (its data included), curves = ``IntegrationMetrics``
PARTS = ["forward", "backward", "optimizer", "logging", "data", OTHER, "validation", "curves"]
BASE = ["seed=0", "logger=none", "trainer=cpu", "trainer.num_threads=1"]
#: MULTIVI's parity settings (scvi-tools defaults; ``benchmarks/multivi_parity.py`` at d229c92)
MULTIVI = """model.batch_size=128 model.n_hidden=128 model.n_latent=20 model.lr=1e-4
model.weight_decay=1e-3 model.eps=1e-8 model.n_epochs_kl_warmup=50 model.dropout_rate=0.1
model.n_layers_encoder=2 model.n_layers_decoder=2 model.gene_likelihood=zinb model.library=learned
model.protein_mixture=true model.modality_weights=equal model.modality_penalty=jeffreys
model.adversarial_mixing=true model.adversary_kappa=1.0 eval.kbet=false eval.leiden=true""".split()


def overrides(
    model: str, epochs: int, data: str | None, extra: list[str] | None = None
) -> list[str]:
    """The fit's overrides: MultiVI with MULTIVI's parity settings, others with their own;
    ``extra`` (``--set``): Hydra overrides after these, and every model with its own settings."""
    over = [f"data={data or SNARE}", f"model={model}", *BASE, f"model.max_epochs={epochs}"]
    parity = MULTIVI * (model == "multivi" and not extra)
    return [*over, "trainer.enable_progress_bar=false", *parity, *(extra or [])]


class Clock(L.Callback):
    """Process CPU seconds per part, one row per epoch (add it before the other callbacks)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.current, self.depth, self.rss = defaultdict(float), 0, []
        self.start = self.batch_end = self.val_start = None

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
        """Time every call of ``obj.attr`` as ``name`` (nothing when ``obj`` has none)."""
        inner = getattr(obj, attr, None)
        if inner is None:
            return

        def timed(*args, **kwargs):
            with self.part(name, always):
                return inner(*args, **kwargs)

        setattr(obj, attr, timed)

    def instrument(self, model) -> None:
        """Wrap the model's forward, backward, optimiser, logging, curves and checkpoints."""
        from mmint.callbacks import IntegrationMetrics

        self.wrap(model.module, "loss", "forward")
        if getattr(model, "adversary", None) is not None:
            self.wrap(model.adversary, "loss", "forward")
        self.wrap(model, "manual_backward", "backward")
        self.wrap(model, "log", "logging")
        for cls in {torch.optim.Adam, torch.optim.AdamW}:
            self.wrap(cls, "step", "optimizer")
            self.wrap(cls, "zero_grad", "optimizer")
        self.wrap(IntegrationMetrics, "on_validation_epoch_end", "curves", always=True)
        self.wrap(L.Trainer, "save_checkpoint", "checkpoint")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.on_train_end(trainer, pl_module)
        self.current = defaultdict(float)
        self.start = self.batch_end = time.process_time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.current["data"] += time.process_time() - self.batch_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batch_end = time.process_time()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.val_start, self.depth = time.process_time(), self.depth + 1

    def on_validation_end(self, trainer, pl_module) -> None:
        # after every callback's on_validation_epoch_end (the curves) and before the
        # checkpoint callbacks' own on_validation_end (this callback is added first)
        self.current["validation"] += time.process_time() - self.val_start
        self.depth -= 1

    def on_train_end(self, trainer, pl_module) -> None:
        # an epoch ends when the next starts (or training ends): the checkpoint callbacks
        # save after every other callback's on_train_epoch_end
        if self.start is None:
            return
        total, row = time.process_time() - self.start, dict(self.current)
        # the curves run inside the validation hooks: not part of validation proper
        row["validation"] = row.get("validation", 0.0) - row.get("curves", 0.0)
        row[OTHER], row["total"] = max(0.0, total - sum(row.values())), total
        self.epochs.append(row)
        self.rss.append(peak_rss_mb())
        self.start = None


def count_syncs(model, dm, n_batches: int = 3) -> float:
    """``aten::_local_scalar_dense`` calls per training step (host syncs on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    it, opts = iter(dm.train_dataloader()), model.configure_optimizers()
    model.optimizers, model.log, model._trainer = lambda: opts, lambda *a, **k: None, None
    model.manual_backward = lambda loss: loss.backward()
    model.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(n_batches):
            model.training_step(next(it), i)
    calls = {e.key: e.count for e in prof.key_averages()}
    return calls.get("aten::_local_scalar_dense", 0) / n_batches


def parts(
    model_name: str, epochs: int, data: str | None, extra: list[str] | None = None
) -> dict[str, Any]:
    """One fit through ``train_model`` with the parts timed; per-epoch rows."""
    import mmint.fit as fit_mod

    cfg, (_, max_epochs, _, dm, model) = fit_setup(overrides(model_name, epochs, data, extra))
    clock, original = Clock(), fit_mod.Timing
    clock.instrument(model)

    class Timing(original):  # the pipeline's own timing callback, which adds the parts first
        def setup(self, trainer, pl_module, stage) -> None:
            if clock not in trainer.callbacks:
                trainer.callbacks.insert(0, clock)

    fit_mod.Timing = Timing
    with tempfile.TemporaryDirectory() as tmp:
        start, wall = time.process_time(), time.perf_counter()
        fit_mod.train_model(model, dm, cfg, Path(tmp), int(max_epochs), [], None)
        fit_cpu, fit_wall = time.process_time() - start, time.perf_counter() - wall
    fit_mod.Timing = original
    n_train, batches = int(len(dm.split["train"])), len(dm.train_dataloader())
    out = dict(n_train=n_train, batches=batches, fit_cpu=fit_cpu, fit_wall=fit_wall, rss=clock.rss)
    # the sync count steps the model outside a trainer: the shared VAE plan's models only
    syncs = count_syncs(model, dm) if hasattr(model.module, "loss") else float("nan")
    return {**out, "epochs": clock.epochs, "syncs": syncs, "load": load()}


def markdown(result: dict[str, Any]) -> str:
    """One table: CPU seconds per part in each epoch (epoch 1 has the epoch-0 curves)."""
    head = ["part", *(f"epoch {i + 1}" for i in range(len(result["epochs"])))]
    parts = [*PARTS, "checkpoint", "total"]
    return "\n".join(
        table(head, [[p, *(f"{e.get(p, 0.0):.2f}" for e in result["epochs"])] for p in parts])
    )


def operators(args: argparse.Namespace) -> None:
    """``--epochs`` epochs after one warm-up under ``torch.profiler``; the operator table."""
    from torch.profiler import ProfilerActivity, profile

    over = [f"data={args.data or PATCHSEQ}", f"model={args.model}", *BASE]
    _, (_, _, _, dm, model) = fit_setup(over)

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
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
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
    _, (_, _, _, dm, model) = fit_setup(overrides("multivi", 1, args.data))
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
    parser.add_argument("--operators", action="store_true", help="operator table mode")
    parser.add_argument("--model", default="unitednet_patchseq", help="operators")
    parser.add_argument("--data", help="dataset: SNARE-seq; operators: Patch-seq")
    parser.add_argument("--rows", type=int, default=30, help="operators: rows shown")
    parser.add_argument("--set", nargs="*", help="parts: extra Hydra overrides (own settings)")
    parser.add_argument("--memory", choices=["fit", "accumulator"], help="memory probe mode")
    parser.add_argument("--batches", choices=["sparse", "dense"], help="memory fit: batches")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.epochs = args.epochs or (1 if args.operators else 3)
    torch.set_num_threads(1)
    if args.operators or args.memory:
        operators(args) if args.operators else memory(args)
        return
    if args.child:
        emit(parts(args.child, args.epochs, args.data, args.set))
        return
    for m in args.models:  # one process per model: peak RSS is per fit
        r = child([__file__, "--child", m, *sys.argv[1:]])
        print(f"## {m}: {r['n_train']} training cells, {r['batches']} batches")
        print(f"fit CPU {r['fit_cpu']:.1f} s, wall {r['fit_wall']:.1f} s, load {r['load']}")
        rss, syncs = ", ".join(f"{x:.0f}" for x in r["rss"]), r["syncs"]
        print(f"peak RSS by epoch {rss} MB, item() calls per step {syncs:.0f}")
        print(markdown(r), flush=True)


if __name__ == "__main__":
    main()
