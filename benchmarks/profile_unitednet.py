"""Where one UnitedNet training epoch goes, per operator: the Patch-seq preset
(``model=unitednet_patchseq data=patchseq_gouwen2020``, 10 heads, batch 16) through the fit
pipeline's setup, one torch thread.

One warm-up epoch, then one epoch (its validation pass included, no checkpoints) under
``torch.profiler``; prints the operators by self CPU time, the host syncs
(``aten::item`` / ``aten::_local_scalar_dense``) per training step, and the epoch's process CPU
seconds.

Usage::

    MMINT_DATA_DIR=/work/shared/data python benchmarks/profile_unitednet.py --rows 30
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="unitednet_patchseq")
    parser.add_argument("--data", default="patchseq_gouwen2020")
    parser.add_argument("--rows", type=int, default=30, help="operators shown")
    parser.add_argument("--epochs", type=int, default=1, help="profiled epochs")
    parser.add_argument("--shapes", action="store_true", help="group operators by input shape")
    args = parser.parse_args()

    import lightning as L
    import torch
    from torch.profiler import ProfilerActivity, profile

    from mmint.cli import compose
    from mmint.config import plain
    from mmint.fit import _setup

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    os.environ.setdefault("CI", "true")
    over = [f"data={args.data}", f"model={args.model}", "seed=0", "logger=none", "trainer=cpu"]
    cfg = plain(compose("fit", [*over, "trainer.num_threads=1"]))
    _, _, _, dm, model = _setup(cfg)

    class Profiled(L.Callback):
        def __init__(self) -> None:
            self.prof, self.cpu, self.steps = None, 0.0, 0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes)
                self.prof.__enter__()
                self.cpu = time.process_time()

        def on_train_batch_end(self, trainer, *a) -> None:
            self.steps += trainer.current_epoch >= 1

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.current_epoch == args.epochs and self.prof is not None:
                self.cpu = time.process_time() - self.cpu
                self.prof.__exit__(None, None, None)

    cb = Profiled()
    trainer = L.Trainer(
        max_epochs=1 + args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
        callbacks=[cb],
    )
    trainer.fit(model, datamodule=dm)
    events = cb.prof.key_averages(group_by_input_shape=args.shapes)
    print(
        events.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40)
    )
    syncs = sum(e.count for e in events if e.key in ("aten::item", "aten::_local_scalar_dense"))
    print(f"training steps profiled: {cb.steps}; host syncs (item/_local_scalar_dense): {syncs}")
    print(
        f"process CPU seconds of the profiled epoch(s) (profiler overhead included): {cb.cpu:.2f}"
    )


if __name__ == "__main__":
    main()
