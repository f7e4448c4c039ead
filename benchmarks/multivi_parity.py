"""MultiVI parity: mmint's MultiVI-style model against scvi-tools' MULTIVI, same cells and settings.

For each dataset and seed, both models are trained on the same training cells (mmint's random
80/10/10 split by seed), with the same features, network sizes, epochs and optimiser settings,
and both are scored by mmint's one metric path (:func:`mmint.evaluate.evaluate` on the test
cells): scvi-tools' model is wrapped as an :class:`mmint.models.base.Integrator` adapter whose
methods look precomputed rows up by ``batch["index"]``.

Every fit runs in a fresh subprocess (so peak RSS is per model) with one torch thread; each
finished fit is written at once (atomically) to ``<work>/fits/<dataset>__<model>__s<seed>.json``,
and the CSV/Markdown tables are rewritten after every fit, so partial results survive. A rerun
skips finished fits (``--force`` redoes them). Fits that would not finish within ``--budget-min``
(estimated from finished fits) are skipped and reported as such.

Usage (the scvi-tools venv: this needs scvi-tools 1.4.2 and mmint)::

    MMINT_DATA_DIR=/work/shared/data nohup /work/venv-scvi/bin/python benchmarks/multivi_parity.py \
        > runs/multivi_parity/driver.log 2>&1 &

Options: ``--seeds 0 1 2``, ``--epochs 200`` (BMMC starters), ``--snare-epochs 30``,
``--snare-seeds 0 1 2``, ``--datasets ...``, ``--budget-min 55``, ``--work runs/multivi_parity``,
``--out benchmarks/results``, ``--smoke`` (2 epochs, separate work dir, no tables in ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmint.models.base import Integrator

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MMINT_DATA_DIR", "/work/shared/data")

BMMC = ("bmmc_multiome_neurips2021_starter", "bmmc_cite_neurips2021_starter")
SNARE = "snareseq_mouse_cortex_chen2019"
#: n_hidden by scvi-tools' rule min(128, int(sqrt(n_regions))) (genes without ATAC)
N_HIDDEN = {BMMC[0]: 24, BMMC[1]: 31, SNARE: 128}
N_LATENT = 20
MODELS = ("mmint", "scvi")
#: shared optimisation settings (scvi-tools MULTIVI.train defaults)
LR, WEIGHT_DECAY, EPS, KL_WARMUP, BATCH_SIZE = 1e-4, 1e-3, 1e-8, 50, 128
#: a-priori seconds per epoch on one idle core (anchor-results.md), for the budget guard
PRIOR_SPE = {BMMC[0]: 0.25, BMMC[1]: 0.3, SNARE: 30.0}
PRIOR_OVERHEAD_S = 90.0  # imports, data, scoring (scib-metrics JIT) per fit


# ============================================================================ helpers
def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def atomic_json(path: Path, data: Any) -> None:
    from mmint.io import write_json

    write_json(path, data)


def make_epoch_timer():
    """A Lightning callback timing the training part of each epoch only (validation excluded)
    and recording peak RSS when training ends (before scoring)."""
    import lightning as L

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.train_seconds: list[float] = []
            self.total_seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self._start = self._cpu = 0.0
            self._stop: float | None = None
            self._cpu_stop: float | None = None
            self.rss_after_training: float | None = None

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start, self._stop = time.perf_counter(), None
            self._cpu, self._cpu_stop = time.process_time(), None

        def on_validation_start(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking and self._stop is None:
                self._stop, self._cpu_stop = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            now, cpu = time.perf_counter(), time.process_time()
            self.train_seconds.append((self._stop or now) - self._start)
            self.cpu_seconds.append((self._cpu_stop or cpu) - self._cpu)
            self.total_seconds.append(now - self._start)

        def on_fit_end(self, trainer, pl_module) -> None:
            self.rss_after_training = peak_rss_mb()

        def summary(self) -> dict[str, Any]:
            n = len(self.train_seconds)
            return {
                "epochs_timed": n,
                "seconds_per_epoch_train": float(np.mean(self.train_seconds)) if n else None,
                "seconds_per_epoch_median_train": float(np.median(self.train_seconds))
                if n
                else None,
                "seconds_per_epoch_with_val": float(np.mean(self.total_seconds)) if n else None,
                # process CPU time (one torch thread): close to idle-machine wall time
                "cpu_seconds_per_epoch_train": float(np.mean(self.cpu_seconds)) if n else None,
                "train_seconds": float(np.sum(self.train_seconds)),
                "peak_rss_mb_training": self.rss_after_training,
            }

    return EpochTimer


def overrides(dataset: str, seed: int, epochs: int) -> list[str]:
    """Hydra overrides of the mmint fit: MULTIVI's settings (see the module docstring)."""
    return [
        f"data={dataset}",
        "model=multivi",
        f"seed={seed}",
        "logger=none",
        "trainer=cpu",
        "trainer.num_threads=1",
        "trainer.enable_progress_bar=false",
        f"model.max_epochs={epochs}",
        f"model.batch_size={BATCH_SIZE}",
        f"model.n_hidden={N_HIDDEN[dataset]}",
        f"model.n_latent={N_LATENT}",
        f"model.lr={LR}",
        f"model.weight_decay={WEIGHT_DECAY}",
        f"model.eps={EPS}",
        f"model.n_epochs_kl_warmup={KL_WARMUP}",
        "model.dropout_rate=0.1",
        "model.n_layers_encoder=2",
        "model.n_layers_decoder=2",
        "model.gene_likelihood=zinb",  # MULTIVI's default likelihood
        "model.library=learned",  # MULTIVI learns the RNA library size
        "model.protein_mixture=true",  # MULTIVI's totalVI-style ADT mixture
        "model.modality_weights=equal",
        "model.modality_penalty=jeffreys",
        "model.adversarial_mixing=true",
        "model.adversary_kappa=1.0",
        "eval.kbet=false",
        "eval.scib=true",
        "eval.leiden=true",
        # per-epoch curves only at epoch 0 and the last epoch (saves wall time; not timed)
        "eval.every_n_epochs=100000",
    ]


def train_kwargs(epochs: int, split: list[np.ndarray], callback: Any) -> dict[str, Any]:
    """``MULTIVI.train`` arguments of the parity settings (CPU, no early stopping, quiet), on the
    given train / val / test cell indices."""
    return {
        "max_epochs": epochs,
        "lr": LR,
        "accelerator": "cpu",
        "devices": 1,
        "batch_size": BATCH_SIZE,
        "weight_decay": WEIGHT_DECAY,
        "eps": EPS,
        "early_stopping": False,
        "n_epochs_kl_warmup": KL_WARMUP,
        "adversarial_mixing": True,
        "datasplitter_kwargs": {"external_indexing": split},
        "callbacks": [callback],
        "enable_progress_bar": False,
        "logger": False,
        "enable_model_summary": False,
    }


def compose_cfg(dataset: str, seed: int, epochs: int):
    from mmint.cli import compose
    from mmint.config import plain

    return plain(compose("fit", overrides(dataset, seed, epochs)))


# ============================================================================ mmint fit (child)
def child_mmint(dataset: str, seed: int, epochs: int, run_dir: Path) -> dict[str, Any]:
    """mmint's model through the normal fit path (``run_fit``), timing injected."""
    import torch

    import mmint.fit as fit_mod

    torch.set_num_threads(1)
    timer_cls = make_epoch_timer()
    holder: dict[str, Any] = {}

    base = fit_mod.Timing

    class Timing(base):  # run_fit's own timing plus the train-only timer
        def __init__(self) -> None:
            super().__init__()
            self.timer = timer_cls()
            holder["timer"] = self.timer

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            super().on_train_epoch_start(trainer, pl_module)
            self.timer.on_train_epoch_start(trainer, pl_module)

        def on_validation_start(self, trainer, pl_module) -> None:
            self.timer.on_validation_start(trainer, pl_module)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            super().on_train_epoch_end(trainer, pl_module)
            self.timer.on_train_epoch_end(trainer, pl_module)

        def on_fit_end(self, trainer, pl_module) -> None:
            self.timer.on_fit_end(trainer, pl_module)

    fit_mod.Timing = Timing
    cfg = compose_cfg(dataset, seed, epochs)
    t0 = time.perf_counter()
    metrics = fit_mod.run_fit(cfg, run_dir)
    wall = time.perf_counter() - t0
    timer = holder["timer"]
    return {
        "metrics": metrics,
        "timing": {
            **timer.summary(),
            "seconds_per_epoch_run_fit": metrics.get("seconds_per_epoch"),
            "best_epoch": metrics.get("best_epoch"),
            "wall_seconds": wall,
            "peak_rss_mb_end": peak_rss_mb(),
        },
        "config": cfg["model"],
    }


# ============================================================================ scvi-tools fit (child)
class ScviAdapter(Integrator):
    """scvi-tools' MULTIVI as an mmint Integrator: precomputed rows looked up by index.

    ``joint``/``latents`` hold all cells; ``pred[(src, dst)]`` holds the cells in ``pred_cells``
    (the scored cells), in mmint's model-input space of ``dst``.
    """

    name = "scvi_multivi"
    trains_in_epochs = True

    def __init__(self, spec, joint, latents, pred, pred_cells, n_cells):
        self.spec = spec
        self.joint = joint
        self.lat = latents
        self.pred = pred
        self.pos = np.full(n_cells, -1, dtype=np.int64)
        self.pos[pred_cells] = np.arange(len(pred_cells))

    @staticmethod
    def _t(x):
        import torch

        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def _idx(self, batch):
        from mmint import keys

        return batch[keys.INDEX].cpu().numpy()

    def latents(self, batch):
        i = self._idx(batch)
        return {m: self._t(z[i]) for m, z in self.lat.items()}

    def joint_latent(self, batch):
        return self._t(self.joint[self._idx(batch)])

    def translate(self, batch, src, dst):
        rows = self.pos[self._idx(batch)]
        if (rows < 0).any():
            raise KeyError("translation asked for cells that were not precomputed")
        return self._t(self.pred[(src, dst)][rows])

    def predict_groups(self, batch):
        return None


def child_scvi(dataset: str, seed: int, epochs: int, run_dir: Path) -> dict[str, Any]:
    """scvi-tools' MULTIVI on mmint's training cells, scored through mmint's evaluate."""
    import scvi
    import torch
    from scvi.model import MULTIVI

    from mmint.evaluate import evaluate
    from mmint.fit import build_datamodule, versions
    from mmint.io import write_json
    from mmint.metrics.prediction import auroc as auroc_fn
    from mmint.models.scvi_tools.data import build_mudata  # as mmint's scvi_multivi
    from mmint.models.scvi_tools.predict import multivi_generate, predictions

    torch.set_num_threads(1)
    scvi.settings.num_threads = 1
    scvi.settings.dl_num_workers = 0
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = compose_cfg(dataset, seed, epochs)
    dm = build_datamodule(cfg, BATCH_SIZE)
    mdata, roles = build_mudata(dm)
    scvi.settings.seed = seed
    MULTIVI.setup_mudata(
        mdata,
        batch_key="batch",
        modalities={**roles, "batch_key": roles["rna_layer"]},
    )
    n_genes = mdata[roles["rna_layer"]].n_vars
    n_regions = mdata[roles["atac_layer"]].n_vars if "atac_layer" in roles else 0
    model = MULTIVI(
        mdata,
        n_genes=n_genes,
        n_regions=n_regions,
        n_hidden=N_HIDDEN[dataset],
        n_latent=N_LATENT,
    )
    timer = make_epoch_timer()()
    split = [np.asarray(dm.split[s], dtype=np.int64) for s in ("train", "val", "test")]
    model.train(**train_kwargs(epochs, split, timer))
    fit_seconds = time.perf_counter() - t0
    model.module.eval()
    # latents of all cells (the evaluate path also reads training cells for ari_class)
    joint = model.get_latent_representation(modality="joint", batch_size=512)
    api_name = {
        "rna_layer": "expression",
        "atac_layer": "accessibility",
        "protein_layer": "protein",
    }
    latents = {
        m: model.get_latent_representation(modality=api_name[r], batch_size=512)
        for r, m in roles.items()
    }
    test = dm.cells("test")
    pred = predictions(model, roles, test, multivi_generate)
    adapter = ScviAdapter(dm.spec, joint, latents, pred, test, dm.data.n_cells)
    scores = evaluate(adapter, dm, "test", scib=True, kbet=False, leiden=True, seed=seed)
    extra: dict[str, Any] = {}
    if "atac_layer" in roles:
        atac = roles["atac_layer"]
        truth = dm.inputs[atac][test]
        for src in roles.values():
            extra.setdefault("auroc_noregion", {})[src] = {
                atac: float(auroc_fn(truth, pred[(src, atac + "_noregion")]))
            }
    metrics = {
        "model": "scvi_multivi",
        "data": dataset,
        "seed": seed,
        "protocol": "mmint random split; scvi-tools MULTIVI trained on the train cells "
        "(external_indexing [train, val, test], no early stopping, last epoch), "
        "scored on test cells through mmint.evaluate",
        "split": {f"n_{k}": int(len(v)) for k, v in dm.split.items()},
        "versions": {**versions(), "scvi_tools": scvi.__version__},
        **scores,
        **extra,
        "fit_seconds": fit_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "n_hidden": int(model.module.n_hidden),
        "n_latent": int(model.module.n_latent),
        "epochs": len(timer.train_seconds),
    }
    write_json(run_dir / "metrics.json", metrics)
    return {
        "metrics": metrics,
        "timing": {
            **timer.summary(),
            "best_epoch": None,
            "wall_seconds": time.perf_counter() - t0,
            "peak_rss_mb_end": peak_rss_mb(),
        },
        "config": {
            "n_hidden": int(model.module.n_hidden),
            "n_latent": int(model.module.n_latent),
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "n_epochs_kl_warmup": KL_WARMUP,
            "batch_size": BATCH_SIZE,
            "gene_likelihood": model.module.gene_likelihood,
            "modality_weights": model.module.modality_weights,
            "modality_penalty": model.module.modality_penalty,
        },
    }


def code_version() -> dict[str, Any]:
    """The mmint code a fit ran with: git commit, and a hash of the package's .py files as
    they were when the fit process started (other people edit the tree while fits run)."""
    import hashlib

    digest = hashlib.sha256()
    for f in sorted((REPO / "mmint").rglob("*.py")):
        digest.update(f.relative_to(REPO).as_posix().encode())
        digest.update(f.read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "mmint"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    return {"commit": commit, "mmint_dirty": bool(dirty), "mmint_sha256": digest.hexdigest()[:16]}


def child_main(args: argparse.Namespace) -> None:
    code = code_version()
    out = Path(args.child_out)
    run_dir = Path(args.run_dir)
    fn = child_mmint if args.child == "mmint" else child_scvi
    try:
        res = fn(args.dataset, args.seed, args.epochs, run_dir)
        res["status"] = "ok"
    except Exception as err:  # recorded, the driver goes on with the next fit
        import traceback

        traceback.print_exc()
        res = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    res.update(
        {
            "dataset": args.dataset,
            "model": args.child,
            "seed": args.seed,
            "epochs": args.epochs,
            "code": code,
        }
    )
    atomic_json(out, res)


# ============================================================================ summary
def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def other_modality(dataset: str) -> str:
    return "adt" if "cite" in dataset else "atac"


#: (column, label, higher_is_better, extractor)
def score_columns(dataset: str) -> list[tuple[str, str, bool, Any]]:
    o = other_modality(dataset)
    cols = [
        ("scib_bio", "scIB bio conservation", True, lambda m: _get(m, "scib", "bio_conservation")),
        (
            "scib_batch",
            "scIB batch correction",
            True,
            lambda m: _get(m, "scib", "batch_correction"),
        ),
        ("scib_total", "scIB total", True, lambda m: _get(m, "scib", "total")),
        ("ari_kmeans", "KMeans ARI", True, lambda m: m.get("ari_kmeans")),
        ("nmi_kmeans", "KMeans NMI", True, lambda m: m.get("nmi_kmeans")),
        ("nmi_leiden", "Leiden best NMI", True, lambda m: m.get("nmi_leiden")),
        ("foscttm", "FOSCTTM (lower better)", False, lambda m: m.get("foscttm")),
        (
            "pearson_rna_from_other",
            f"RNA per-cell Pearson from {o} only",
            True,
            lambda m: _get(m, "pearson", o, "rna"),
        ),
    ]
    if o == "atac":
        cols.append(
            (
                "auroc_atac_from_rna",
                "ATAC per-cell AUROC from RNA only",
                True,
                lambda m: _get(m, "auroc", "rna", "atac"),
            )
        )
        cols.append(
            (
                "pearson_atac_from_rna",
                "ATAC per-cell Pearson from RNA only",
                True,
                lambda m: _get(m, "pearson", "rna", "atac"),
            )
        )
    else:
        cols.append(
            (
                "pearson_adt_from_rna",
                "ADT (clr) per-cell Pearson from RNA only",
                True,
                lambda m: _get(m, "pearson", "rna", "adt"),
            )
        )
    cols.append(
        (
            "pearson_rna_recon",
            "RNA per-cell Pearson, reconstruction from RNA",
            True,
            lambda m: _get(m, "pearson", "rna", "rna"),
        )
    )
    return cols


COST_COLUMNS = [
    (
        "seconds_per_epoch",
        "seconds per epoch, wall (training only, one thread, shared machine)",
        False,
    ),
    ("cpu_seconds_per_epoch", "CPU seconds per epoch (training only, one thread)", False),
    ("peak_rss_mb", "peak RSS, MB (whole fit process: load, train, score)", False),
    ("peak_rss_mb_training", "peak RSS, MB, at the end of training", False),
]


def flatten(res: dict[str, Any]) -> dict[str, Any]:
    """One CSV row from a fit record."""
    m = res.get("metrics", {}) or {}
    t = res.get("timing", {}) or {}
    row: dict[str, Any] = {
        "dataset": res["dataset"],
        "model": res["model"],
        "seed": res["seed"],
        "epochs": res["epochs"],
        "status": res.get("status"),
        "error": res.get("error", ""),
    }
    for col, _, _, fn in score_columns(res["dataset"]):
        row[col] = fn(m) if m else None
    row["seconds_per_epoch"] = t.get("seconds_per_epoch_train")
    row["seconds_per_epoch_median"] = t.get("seconds_per_epoch_median_train")
    row["seconds_per_epoch_with_val"] = t.get("seconds_per_epoch_with_val")
    row["cpu_seconds_per_epoch"] = t.get("cpu_seconds_per_epoch_train")
    row["peak_rss_mb"] = t.get("peak_rss_mb_end")
    row["peak_rss_mb_training"] = t.get("peak_rss_mb_training")
    row["fit_wall_seconds"] = t.get("wall_seconds")
    row["best_epoch"] = t.get("best_epoch")
    row["n_train"] = _get(m, "split", "n_train")
    row["n_test"] = _get(m, "split", "n_test")
    row["auroc_atac_from_rna_noregion"] = _get(m, "auroc_noregion", "rna", "atac")
    code = res.get("code") or {}
    row["mmint_commit"] = code.get("commit")
    row["mmint_sha256"] = code.get("mmint_sha256")
    row["mmint_dirty"] = code.get("mmint_dirty")
    return row


def load_fits(work: Path) -> list[dict[str, Any]]:
    fits = []
    for p in sorted((work / "fits").glob("*.json")):
        try:
            fits.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            continue
    return fits


def _ms(vals: list[float]) -> tuple[float | None, float | None]:
    v = [float(x) for x in vals if x is not None and np.isfinite(x)]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)


def _fmt(mean: float | None, sd: float | None, digits: int = 3) -> str:
    if mean is None:
        return "-"
    s = f"{mean:.{digits}f}"
    return s + (f" +/- {sd:.{digits}f}" if sd is not None else " (1 seed)")


def write_tables(rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> None:
    import pandas as pd

    from mmint.io import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["dataset", "model", "seed"])
    atomic_write(out / "multivi_parity.csv", df.to_csv(index=False))
    meta = {**meta, "analysis": kept_analysis(out / "multivi_parity.md")}
    atomic_write(out / "multivi_parity.md", render_md(df, meta))


def verdict(col: str, higher: bool, ours: float | None, ref: float | None) -> str:
    if ours is None or ref is None:
        return "n/a"
    diff = ours - ref if higher else ref - ours  # positive = ours better
    if diff >= 0:
        return "ours better or equal"
    if diff >= -0.05:
        return "within 0.05"
    return f"**worse by {-diff:.3f}**"


#: everything after this line of an existing report is kept when the report is rewritten
ANALYSIS_MARK = "<!-- analysis (kept when the script rewrites this file) -->"


def kept_analysis(path: Path) -> str:
    """The hand-written analysis of an existing report (after :data:`ANALYSIS_MARK`)."""
    if not path.exists():
        return ""
    text = path.read_text()
    return text.split(ANALYSIS_MARK, 1)[1] if ANALYSIS_MARK in text else ""


def render_md(df, meta: dict[str, Any]) -> str:
    lines = [
        "# MultiVI parity: mmint `multivi` vs scvi-tools `MULTIVI`",
        "",
        "Generated by `benchmarks/multivi_parity.py` (rewritten after every finished fit).",
        "",
        "## Command",
        "",
        "```",
        meta["command"],
        "```",
        "",
        "## Machine and versions",
        "",
    ]
    for k, v in meta["machine"].items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Settings (the same for both models)", ""]
    lines += [f"- {s}" for s in meta["settings"]]
    if df.empty:
        lines += ["", "(no finished fits yet)", "", ANALYSIS_MARK, meta.get("analysis", "").strip()]
        return "\n".join(lines) + "\n"
    lines += ["", "## Results (test cells; mean +/- sd over seeds)", ""]
    for dataset in sorted(df["dataset"].unique(), key=lambda d: (d == SNARE, d)):
        sub = df[df["dataset"] == dataset]
        ok = sub[sub["status"] == "ok"]
        epochs = sorted(set(int(e) for e in sub["epochs"]))
        lines += [f"### {dataset} ({', '.join(map(str, epochs))} epochs)", ""]
        seeds = {m: sorted(int(s) for s in ok[ok["model"] == m]["seed"]) for m in MODELS}
        lines.append(
            f"Seeds finished: mmint {seeds['mmint'] or 'none'}, scvi-tools "
            f"{seeds['scvi'] or 'none'}."
        )
        failed = sub[sub["status"] != "ok"]
        for _, r in failed.iterrows():
            lines.append(f"- {r['model']} seed {r['seed']}: {r['status']} - {r['error']}")
        if ok.empty:
            lines.append("")
            continue
        lines += [
            "",
            "| score | mmint multivi | scvi-tools MULTIVI | ours within 0.05 or better? |",
            "|---|---|---|---|",
        ]
        for col, label, higher, _ in score_columns(dataset):
            if col not in ok:
                continue
            a = _ms(list(ok[ok["model"] == "mmint"][col]))
            b = _ms(list(ok[ok["model"] == "scvi"][col]))
            lines.append(
                f"| {label} | {_fmt(*a)} | {_fmt(*b)} | {verdict(col, higher, a[0], b[0])} |"
            )
        if (
            "auroc_atac_from_rna_noregion" in ok
            and ok["auroc_atac_from_rna_noregion"].notna().any()
        ):
            b = _ms(list(ok[ok["model"] == "scvi"]["auroc_atac_from_rna_noregion"]))
            lines.append(
                f"| ATAC AUROC from RNA, scvi `p` without region factors | - | {_fmt(*b)} | "
                "(reference only) |"
            )
        for col, label, _ in COST_COLUMNS:
            a = _ms(list(ok[ok["model"] == "mmint"][col]))
            b = _ms(list(ok[ok["model"] == "scvi"][col]))
            d = 0 if "rss" in col else 3
            lines.append(f"| {label} | {_fmt(*a, digits=d)} | {_fmt(*b, digits=d)} | (cost) |")
        be = [int(x) for x in ok[ok["model"] == "mmint"]["best_epoch"] if x == x and x is not None]
        if be:
            lines.append(
                f"| mmint best epoch on val loss (checkpoint scored) | {be} | last epoch | |"
            )
        lines.append("")
    if meta.get("skipped"):
        lines += ["## Fits not run", ""]
        lines += [f"- {s}" for s in meta["skipped"]]
        lines.append("")
    lines += [ANALYSIS_MARK, meta.get("analysis", "").strip(), ""]
    return "\n".join(lines) + "\n"


# ============================================================================ driver
def machine_info() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def v(p: str) -> str:
        try:
            return version(p)
        except PackageNotFoundError:
            return "-"

    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "RAM": mem,
        "load average at start (1/5/15 min)": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "torch": v("torch"),
        "lightning": v("lightning"),
        "scvi-tools": v("scvi-tools"),
        "scib-metrics": v("scib-metrics"),
        "mudata / anndata": f"{v('mudata')} / {v('anndata')}",
        "threads": "torch.set_num_threads(1) in every fit process",
    }


SETTINGS = [
    "same cells: mmint's random 80/10/10 split stratified by label, by seed (`dm.split`); "
    "MULTIVI gets it through `datasplitter_kwargs={'external_indexing': [train, val, test]}` "
    "so it trains on the train cells only; both are scored on the test cells",
    "same features: all genes/peaks/ADTs of the dataset (no selection); RNA and ADT raw counts, "
    "ATAC binarised (x > 0) for both",
    f"n_latent {N_LATENT}; n_hidden by scvi-tools' rule min(128, int(sqrt(n_regions))) "
    "(genes without ATAC): 24 multiome, 31 CITE, 128 SNARE-seq; 2 encoder and 2 decoder layers; "
    "dropout 0.1",
    f"AdamW lr {LR}, weight decay {WEIGHT_DECAY}, eps {EPS}; batch {BATCH_SIZE}; linear KL warm-up "
    f"over {KL_WARMUP} epochs; adversarial batch classifier (Adam lr 1e-3, eps 0.01, kappa 1); "
    "no early stopping; epochs fixed",
    "mmint model: `gene_likelihood=zinb`, `library=learned`, `protein_mixture=true`, "
    "`modality_weights=equal`, `modality_penalty=jeffreys` (MULTIVI's choices; mmint's config "
    "defaults differ: nb, observed library, lr 1e-3); the checkpoint scored is run_fit's best "
    "on val loss (MULTIVI: the last epoch)",
    "scoring: `mmint.evaluate.evaluate(model, dm, 'test', scib=True, kbet=False, leiden=True)` for "
    "both; MULTIVI through an Integrator adapter (joint latent = "
    "`get_latent_representation(modality='joint')`, per-modality = modality='expression' / "
    "'accessibility' / 'protein'; cross-modal predictions with the other modality's counts "
    "zeroed, at the posterior mean; RNA -> log1p(1e4 * px_scale), ATAC -> p * sigmoid(region "
    "factors), ADT -> log1p of the expected mixture counts, centred per cell)",
    "seconds per epoch: the training part of each epoch only (validation excluded, same "
    "callback for both), one torch thread, on a shared machine (see load average)",
]


def job_list(args) -> list[tuple[str, str, int, int]]:
    jobs = []
    for ds in args.datasets:
        if ds == SNARE:
            continue
        for seed in args.seeds:
            for m in MODELS:
                jobs.append((ds, m, seed, args.epochs))
    if SNARE in args.datasets:
        for seed in args.snare_seeds:
            for m in MODELS:
                jobs.append((SNARE, m, seed, args.snare_epochs))
    return jobs


def estimate(work: Path, ds: str, model: str, epochs: int) -> float:
    """Seconds a fit will take: the mean of finished fits of this kind, else the prior."""
    walls = [
        f["timing"]["wall_seconds"] * epochs / max(1, f["epochs"])
        for f in load_fits(work)
        if f.get("status") == "ok"
        and f["dataset"] == ds
        and f["model"] == model
        and f.get("timing", {}).get("wall_seconds")
    ]
    if walls:
        return float(np.mean(walls))
    load = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    return PRIOR_OVERHEAD_S + PRIOR_SPE[ds] * epochs * load


def ordered_jobs(args) -> list[tuple[str, str, int, int]]:
    """BMMC fits first; with ``--early-snare`` (and 3+ workers) the first SNARE-seq seed pair is
    moved right behind the first BMMC fit, so the two long fits start at once in their own
    workers while the others go through the BMMC fits."""
    jobs = job_list(args)
    snare = [j for j in jobs if j[0] == SNARE]
    rest = [j for j in jobs if j[0] != SNARE]
    if args.early_snare and args.jobs >= 3 and snare and rest:
        first = snare[: len(MODELS)]
        return [rest[0], *first, *rest[1:], *snare[len(MODELS) :]]
    return rest + snare


def driver(args) -> None:
    import threading

    work = Path(args.work)
    (work / "fits").mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    start = time.time()
    budget = args.budget_min * 60
    skipped: list[str] = []
    meta = {
        "command": args.command_line,
        "machine": machine_info(),
        "settings": SETTINGS
        + [
            f"{args.jobs} fits run at a time (each its own process, one thread); "
            f"hard budget {args.budget_min:g} min (a fit still running then is killed)"
        ],
        "skipped": skipped,
    }
    lock = threading.Lock()
    queue = list(ordered_jobs(args))

    def refresh() -> None:
        with lock:
            rows = [flatten(f) for f in load_fits(work)]
            meta["machine"]["load average at last update (1/5/15 min)"] = " ".join(
                f"{x:.1f}" for x in os.getloadavg()
            )
            meta["machine"]["this invocation's wall at last update"] = (
                f"{(time.time() - start) / 60:.1f} min"
            )
            write_tables(rows, work if args.smoke else Path(args.out), meta)

    def run_one(ds: str, model: str, seed: int, epochs: int) -> None:
        tag = f"{ds}__{model}__s{seed}"
        path = work / "fits" / f"{tag}.json"
        if path.exists() and not args.force:
            prev = json.loads(path.read_text())
            if prev.get("status") == "ok" and prev.get("epochs") == epochs:
                print(f"skip (done): {tag}", flush=True)
                return
        left = budget - (time.time() - start)
        need = estimate(work, ds, model, epochs)
        forced = ds == SNARE and seed == args.snare_seeds[0]
        if need > left and not forced:
            msg = (
                f"{ds} {model} seed {seed}: not run, estimated {need / 60:.1f} min > "
                f"{left / 60:.1f} min left of the {args.budget_min:g} min budget"
            )
            print(msg, flush=True)
            with lock:
                skipped.append(msg)
            refresh()
            return
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            model,
            "--dataset",
            ds,
            "--seed",
            str(seed),
            "--epochs",
            str(epochs),
            "--child-out",
            str(path),
            "--run-dir",
            str(work / "runs" / tag),
        ]
        print(f"start {tag} ({epochs} epochs, est. {need / 60:.1f} min)", flush=True)
        t0 = time.time()
        err = None
        with open(work / "logs" / f"{tag}.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            try:
                rc = proc.wait(timeout=max(1.0, left))
            except subprocess.TimeoutExpired:
                proc.kill()  # only our own child, by its handle
                rc = proc.wait()
                err = f"killed at the {args.budget_min:g} min budget after {(time.time() - t0) / 60:.1f} min"
        if err or not path.exists():
            atomic_json(
                path,
                {
                    "dataset": ds,
                    "model": model,
                    "seed": seed,
                    "epochs": epochs,
                    "status": "failed",
                    "error": err or f"child exited {rc} without a result",
                },
            )
        res = json.loads(path.read_text())
        print(f"done {tag}: {res.get('status')} in {(time.time() - t0) / 60:.1f} min", flush=True)
        refresh()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop(0)
            try:
                run_one(*job)
            except Exception as exc:  # keep the other workers going
                print(f"driver error on {job}: {exc!r}", flush=True)

    refresh()
    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
        time.sleep(2.0)
    for t in threads:
        t.join()
    refresh()
    print(f"all done in {(time.time() - start) / 60:.1f} min", flush=True)


def report_only(args) -> None:
    """Rewrite the CSV and Markdown from the finished fits (the command line of the fits'
    run is kept from the existing report)."""
    out = Path(args.work) if args.smoke else Path(args.out)
    md = out / "multivi_parity.md"
    command = args.command_line
    machine: dict[str, str] = {}
    settings = list(SETTINGS)
    skipped: list[str] = []  # fits the driver's budget guard did not start
    if md.exists():  # keep what the driver recorded (command, machine, settings)
        text = md.read_text()
        if "## Command" in text:
            command = text.split("```", 2)[1].strip()
        section = ""
        for line in text.splitlines():
            if line.startswith("## "):
                section = line[3:]
            elif line.startswith("- ") and section.startswith("Machine") and ": " in line:
                key, value = line[2:].split(": ", 1)
                machine[key] = value
            elif line.startswith("- ") and section.startswith("Settings"):
                if line[2:] not in settings:
                    settings.append(line[2:])
            elif line.startswith("- ") and section.startswith("Fits not run"):
                skipped.append(line[2:])
    rows = [flatten(f) for f in load_fits(Path(args.work))]
    machine = machine or machine_info()
    machine["load average when the report was rewritten (1/5/15 min)"] = " ".join(
        f"{x:.1f}" for x in os.getloadavg()
    )
    meta = {"command": command, "machine": machine, "settings": settings, "skipped": skipped}
    write_tables(rows, out, meta)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=[*BMMC, SNARE])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--snare-seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--snare-epochs", type=int, default=30)
    p.add_argument("--budget-min", type=float, default=55.0)
    p.add_argument("--work", default=str(REPO / "runs" / "multivi_parity"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--jobs", type=int, default=4, help="fits run at a time")
    p.add_argument("--no-early-snare", dest="early_snare", action="store_false")
    p.add_argument("--force", action="store_true")
    p.add_argument(
        "--report", action="store_true", help="only rewrite the tables from finished fits"
    )
    p.add_argument("--smoke", action="store_true", help="2 epochs, work dir <work>_smoke")
    # child mode
    p.add_argument("--child", choices=MODELS)
    p.add_argument("--dataset")
    p.add_argument("--seed", type=int)
    p.add_argument("--child-out")
    p.add_argument("--run-dir")
    args = p.parse_args()
    if args.child:
        child_main(args)
        return
    args.command_line = (
        "MMINT_DATA_DIR="
        + os.environ["MMINT_DATA_DIR"]
        + " "
        + " ".join([Path(sys.executable).as_posix(), "benchmarks/multivi_parity.py", *sys.argv[1:]])
    )
    if args.smoke:
        args.epochs = args.snare_epochs = 2
        args.work = args.work.rstrip("/") + "_smoke"
    if args.report:
        report_only(args)
        return
    driver(args)


if __name__ == "__main__":
    main()
