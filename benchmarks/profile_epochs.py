"""Where a training epoch goes: forward, backward, optimiser, data, logging, validation,
per-epoch curves, checkpoint writing, for the MultiVI-style and CVQVAE-style models on
SNARE-seq (10,309 cells, 25,734 peaks).

The fit runs through the fit pipeline's own ``mmint.fit.train_model`` (its checkpoints, curves
callback, divergence check and timing), one torch thread. Each part is timed in process CPU
seconds by wrapping the call that does it:

- forward: the model's loss (``module.loss``) in training and the adversary's loss;
- backward: ``manual_backward``; optimiser: ``Optimizer.step`` (and ``zero_grad``);
- logging: ``LightningModule.log``;
- data: between the end of one training batch and the start of the next (the loader makes
  the dict batch there: row selection, transforms already applied, tensors);
- validation: the validation loop (its own forward passes and data included);
- curves: the per-epoch metrics callback (``IntegrationMetrics``, epoch 0 and every 5th);
- checkpoint: ``Trainer.save_checkpoint`` (best and last, every epoch);
- other: the rest of the epoch (Lightning's loop, callbacks, the step's own glue).

Host syncs: on a CPU there is no device to wait for; the number of ``aten::item`` /
``_local_scalar_dense`` calls per training batch (what would block a GPU) is counted with
``torch.profiler`` on a few batches.

Usage::

    python benchmarks/profile_epochs.py --models multivi cvqvae --epochs 3 \
        --out runs/profile/after.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
SNARE = "snareseq_mouse_cortex_chen2019"
PARTS = [
    "forward",
    "backward",
    "optimizer",
    "logging",
    "data",
    "other (loop, callbacks, step glue)",
    "validation",
    "curves",
    "checkpoint",
]


def config(model: str, epochs: int) -> dict[str, Any]:
    """The fit's config: MultiVI with MULTIVI's parity settings, CVQVAE with its own config."""
    from mmint.cli import compose

    try:
        from mmint.config import plain
    except ImportError:  # code before the contract merge (a "before" profile)
        from mmint.fit import plain

    if model == "multivi":
        import multivi_parity as mp

        over = mp.overrides(SNARE, 0, epochs)
        over = [o for o in over if not o.startswith("eval.every_n_epochs")]
    else:
        over = [
            f"data={SNARE}",
            "model=cvqvae",
            "seed=0",
            "logger=none",
            "trainer=cpu",
            "trainer.num_threads=1",
            "trainer.enable_progress_bar=false",
            f"model.max_epochs={epochs}",
        ]
    return plain(compose("fit", over))


class Clock:
    """Process CPU seconds per part, per epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.current: dict[str, float] = defaultdict(float)
        self.depth = 0

    @contextlib.contextmanager
    def part(self, name: str, always: bool = False):
        # nested parts (a log inside a forward, a forward inside validation) count once, in
        # the outer part; ``always`` parts are counted whatever they are nested in
        if self.depth and not always:
            yield
            return
        self.depth += 1
        start = time.process_time()
        try:
            yield
        finally:
            self.current[name] += time.process_time() - start
            self.depth -= 1

    def wrap(self, obj: Any, attr: str, name: str, always: bool = False) -> None:
        inner = getattr(obj, attr)

        def timed(*args, **kwargs):
            with self.part(name, always):
                return inner(*args, **kwargs)

        setattr(obj, attr, timed)


def instrument(model, clock: Clock) -> None:
    """Wrap the model's forward, backward, optimiser and logging calls."""
    import torch

    clock.wrap(model.module, "loss", "forward")
    if getattr(model, "adversary", None) is not None:
        clock.wrap(model.adversary, "loss", "forward")
    clock.wrap(model, "manual_backward", "backward")
    clock.wrap(model, "log", "logging")
    for cls in {torch.optim.Adam, torch.optim.AdamW}:
        step, zero = cls.step, cls.zero_grad

        def timed_step(self, *a, _step=step, **k):
            with clock.part("optimizer"):
                return _step(self, *a, **k)

        def timed_zero(self, *a, _zero=zero, **k):
            with clock.part("optimizer"):
                return _zero(self, *a, **k)

        cls.step, cls.zero_grad = timed_step, timed_zero


def epoch_callback(clock: Clock):
    import lightning as L

    class EpochParts(L.Callback):
        def __init__(self) -> None:
            self.start = self.batch_end = None
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
            total = time.process_time() - self.start
            row = dict(clock.current)
            # the curves run inside the validation hooks: not part of validation proper
            row["validation"] = row.get("validation", 0.0) - row.get("curves", 0.0)
            named = sum(row.values())
            row["other (loop, callbacks, step glue)"] = max(0.0, total - named)
            row["total"] = total
            clock.epochs.append(row)
            self.rss.append(peak_rss_mb())
            self.start = None

        def on_train_end(self, trainer, pl_module) -> None:
            self._close()

    return EpochParts()


def count_syncs(model, dm, n_batches: int = 3) -> float:
    """``aten::item`` / ``_local_scalar_dense`` calls per training step (host syncs on a GPU)."""
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


def run(model_name: str, epochs: int) -> dict[str, Any]:
    """One fit through ``train_model`` with the parts timed; per-epoch rows."""
    import lightning as L
    import torch

    import mmint.fit as fit_mod
    from mmint.callbacks import IntegrationMetrics

    torch.set_num_threads(1)
    cfg = config(model_name, epochs)
    t0 = time.process_time()
    name, max_epochs, _, dm, model = fit_mod._setup(cfg)
    setup_cpu = time.process_time() - t0
    clock = Clock()
    instrument(model, clock)
    clock.wrap(IntegrationMetrics, "on_validation_epoch_end", "curves", always=True)
    inner_save = L.Trainer.save_checkpoint

    def timed_save(self, *a, **k):
        with clock.part("checkpoint"):
            return inner_save(self, *a, **k)

    L.Trainer.save_checkpoint = timed_save
    parts = epoch_callback(clock)
    original = fit_mod.Timing

    class Timing(original):  # the pipeline's own timing callback plus the parts
        def __init__(self) -> None:
            super().__init__()

        def setup(self, trainer, pl_module, stage) -> None:
            if parts not in trainer.callbacks:
                trainer.callbacks.insert(0, parts)

    fit_mod.Timing = Timing
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        wall = time.perf_counter()
        fit_mod.train_model(model, dm, cfg, Path(tmp), int(max_epochs), [], None)
        fit_cpu, fit_wall = time.process_time() - start, time.perf_counter() - wall
    fit_mod.Timing = original
    syncs = count_syncs(model, dm)
    return {
        "model": model_name,
        "config": cfg["model"],
        "n_train": int(len(dm.split["train"])),
        "batches_per_epoch": len(dm.train_dataloader()),
        "setup_cpu_s": setup_cpu,
        "fit_cpu_s": fit_cpu,
        "fit_wall_s": fit_wall,
        "epochs": clock.epochs,
        "peak_rss_mb_by_epoch": parts.rss,
        "item_calls_per_step": syncs,
        "load_average": list(os.getloadavg()),
    }


def markdown(result: dict[str, Any]) -> str:
    """One table: CPU seconds per part in each epoch (epoch 1 has the epoch-0 curves)."""
    rows = result["epochs"]
    head = "| part | " + " | ".join(f"epoch {i + 1}" for i in range(len(rows))) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]
    for part in [*PARTS, "total"]:
        vals = " | ".join(f"{r.get(part, 0.0):.2f}" for r in rows)
        lines.append(f"| {part} | {vals} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["multivi", "cvqvae"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MMINT_DATA_DIR", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("CI", "true")
    if args.child:
        print("RESULT " + json.dumps(run(args.child, args.epochs)), flush=True)
        return
    import subprocess

    results = []
    for m in args.models:  # one process per model: peak RSS is per fit
        cmd = [sys.executable, __file__, "--child", m, "--epochs", str(args.epochs)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if not lines:
            print(f"{m} failed:\n{proc.stderr[-3000:]}")
            continue
        res = json.loads(lines[-1][7:])
        results.append(res)
        print(f"## {m}: {res['n_train']} training cells, {res['batches_per_epoch']} batches")
        print(
            f"fit CPU {res['fit_cpu_s']:.1f} s, wall {res['fit_wall_s']:.1f} s, load "
            f"{', '.join(f'{x:.1f}' for x in res['load_average'])}, peak RSS by epoch "
            f"{', '.join(f'{x:.0f}' for x in res['peak_rss_mb_by_epoch'])} MB, "
            f"item() calls per step {res['item_calls_per_step']:.0f}"
        )
        print(markdown(res), flush=True)
    if args.out:
        from mmint.io import write_json

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, results)


if __name__ == "__main__":
    main()
