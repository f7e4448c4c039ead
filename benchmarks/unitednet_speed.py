"""UnitedNet training speed on the shape the original was timed on.

2000 cells x (2000 binary + 500 continuous features), 10 classes, batch 512, one CPU thread,
the original's multiome architecture (encoders [64, 64] -> latent 64, batch norm, one head).
The original measured 1.4-1.7 s per epoch on this shape (``/work/shared/reference/
unitednet.md`` section 8: supervised 1.66 s, unsupervised 1.39 s, noisy shared machine);
like it, an epoch here is the full schedule plus a validation pass over the 2000 cells.

Usage::

    python benchmarks/unitednet_speed.py [--epochs 6] [--out benchmarks/results/unitednet_speed.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.models.unitednet import UnitedNet

N_CELLS, N_BINARY, N_CONT, N_CLASSES, BATCH = 2000, 2000, 500, 10, 512
#: the original atacseq/multiome configuration (its table in section 1 of the reference)
MULTIOME = {
    "encoder_hidden": [64, 64],
    "decoder_hidden": [64, 64],
    "discriminator_hidden": [64],
    "latent_dim": 64,
    "latent_activation": "relu",
    "latent_norm": "batch",
    "batch_norm": True,
    "n_head": 1,
    "projector_dim": 100,
}


def make_data(seed: int = 0) -> tuple[DataSpec, dict[str, torch.Tensor]]:
    """Random inputs of the benchmark shape, with class structure so that losses move."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, N_CELLS)
    p = rng.uniform(0.02, 0.3, (N_CLASSES, N_BINARY))
    atac = (rng.random((N_CELLS, N_BINARY)) < p[labels]).astype(np.float32)
    mu = rng.normal(0, 1, (N_CLASSES, N_CONT))
    rna = (mu[labels] + rng.normal(0, 1, (N_CELLS, N_CONT))).astype(np.float32)
    counts = np.bincount(labels, minlength=N_CLASSES).tolist()
    spec = DataSpec(
        modalities=["atac", "rna"],
        kinds={"atac": "binary", "rna": "continuous"},
        n_features={"atac": N_BINARY, "rna": N_CONT},
        transforms={"atac": "binarize", "rna": "standardize"},
        label_names=[f"c{i}" for i in range(N_CLASSES)],
        train_label_counts=counts,
        n_train=N_CELLS,
    )
    data = {
        "atac": torch.from_numpy(atac),
        "rna": torch.from_numpy(rna),
        keys.mask_key("atac"): torch.ones(N_CELLS),
        keys.mask_key("rna"): torch.ones(N_CELLS),
        keys.INDEX: torch.arange(N_CELLS),
        keys.BATCH: torch.zeros(N_CELLS, dtype=torch.long),
        keys.LABEL: torch.from_numpy(labels).long(),
    }
    return spec, data


class _Passes(Sampler[list[int]]):
    """``passes`` reshuffled passes of index batches per epoch (what the data module does)."""

    def __init__(self, n: int, batch: int, passes: int, shuffle: bool, seed: int = 0) -> None:
        self.n, self.batch, self.passes, self.shuffle = n, batch, passes, shuffle
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        for _ in range(self.passes):
            order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            for i in range(0, self.n, self.batch):
                yield order[i : i + self.batch].tolist()

    def __len__(self) -> int:
        return self.passes * -(-self.n // self.batch)


class _Dict(torch.utils.data.Dataset):
    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data = data

    def __len__(self) -> int:
        return N_CELLS

    def __getitem__(self, idx):
        return {k: v[idx] for k, v in self.data.items()}


class _EpochTimer(L.Callback):
    """Wall and CPU time of each epoch: training passes plus the validation pass after them.

    CPU time (of this one-thread process) is what an idle core would take; wall time also
    counts waiting for the core on a shared machine.
    """

    def __init__(self) -> None:
        self.starts: list[tuple[float, float]] = []
        self.ends: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append((time.perf_counter(), time.process_time()))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.ends.append((time.perf_counter(), time.process_time()))


def time_one(task: str, alternation: str, epochs: int, spec, data) -> dict[str, float]:
    """Fit ``epochs`` epochs; seconds per epoch is the median over epochs after the first."""
    L.seed_everything(0, verbose=False)
    model = UnitedNet(spec, task=task, alternation=alternation, **MULTIOME)
    passes = model.train_passes_per_epoch
    ds = _Dict(data)
    train = DataLoader(ds, sampler=_Passes(N_CELLS, BATCH, passes, True), batch_size=None)
    val = DataLoader(ds, sampler=_Passes(N_CELLS, BATCH, 1, False), batch_size=None)
    timer = _EpochTimer()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[timer],
    )
    trainer.fit(model, train, val)
    wall = [e[0] - s[0] for s, e in zip(timer.starts, timer.ends, strict=True)]
    cpu = [e[1] - s[1] for s, e in zip(timer.starts, timer.ends, strict=True)]
    steady = statistics.median(wall[1:]) if len(wall) > 1 else wall[0]
    steady_cpu = statistics.median(cpu[1:]) if len(cpu) > 1 else cpu[0]
    return {
        "passes": passes,
        "first_epoch_s": wall[0],
        "s_per_epoch": steady,
        "cpu_s_per_epoch": steady_cpu,
        "cells_per_s": N_CELLS / steady,
        "train_cells_per_s": N_CELLS * passes / steady,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print a markdown table and write it with the machine and command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/results/unitednet_speed.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec, data = make_data()
    rows = [
        ("supervised", "epoch", "1.66"),
        ("supervised", "batch", "-"),
        ("unsupervised", "epoch", "1.39"),
    ]
    lines = [
        "| task | alternation | passes / epoch | s / epoch (wall) | CPU s / epoch | cells / s "
        "| train cells / s | first epoch s | original s / epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, alternation, original in rows:
        r = time_one(task, alternation, args.epochs, spec, data)
        lines.append(
            f"| {task} | {alternation} | {r['passes']} | {r['s_per_epoch']:.3f} | "
            f"{r['cpu_s_per_epoch']:.3f} | {r['cells_per_s']:.0f} | {r['train_cells_per_s']:.0f} "
            f"| {r['first_epoch_s']:.3f} | {original} |"
        )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = (
        "# UnitedNet training speed\n\n"
        f"{N_CELLS} cells x ({N_BINARY} binary + {N_CONT} continuous), {N_CLASSES} classes, "
        f"batch {BATCH}, one thread, the original multiome architecture (encoders [64, 64] -> "
        "latent 64, batch norm, one head). An epoch is the whole schedule (epoch alternation: "
        "one translation pass, then 2M = 4 classification passes for supervised, 1 clustering "
        "pass for unsupervised) plus one validation pass over the 2000 cells, as in the "
        "original. Seconds per epoch: median over epochs 2..N of the wall time and of the "
        "process CPU time (one thread: the CPU time is what an idle core takes; the wall time "
        "also counts waiting on a shared machine). cells / s = 2000 / (wall s / epoch); "
        "train cells / s counts every pass.\n\n"
        f"{table}\n\n"
        "Original (reference section 8, same shape, one thread, noisy shared 2-core machine): "
        "supervised 1.66 s / epoch, unsupervised 1.39 s / epoch.\n\n"
        f"- machine: {cpu}, {platform.system()} {platform.release()}, "
        f"{torch.get_num_threads()} torch thread, load average at the end "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores\n"
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"lightning {L.__version__}\n"
        f"- command: `python {' '.join(['benchmarks/unitednet_speed.py', *sys.argv[1:]])}`\n"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
