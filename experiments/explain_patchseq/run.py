"""``mmint.explain`` on Patch-seq (Gouwens et al. 2020): Pvalb features and Lrrc38 links.

1. Fit UnitedNet with ``model=unitednet_patchseq`` (the reference's Patch-seq networks) on
   ``data=patchseq_gouwen2020`` for ``--epochs`` epochs (``logger=none``, no scIB).
2. Group relevance for the model group that holds most Pvalb cells (``cell_class``): its top
   genes, electrophysiology and morphology features.
3. Feature relevance within the Pvalb cells (``groups=class``): ``rna -> ephys`` for every
   ephys feature (where does Lrrc38 rank as a driver of each?), and ``ephys -> rna`` for
   Lrrc38 (which ephys features drive its prediction); plus the plain Spearman correlation of
   Lrrc38 with each ephys feature among the Pvalb cells, as a data-level reference.

    MMINT_DATA_DIR=/work/shared/data .venv/bin/python experiments/explain_patchseq/run.py

Writes ``experiments/explain_patchseq/results/`` and prints the README's tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mmint.cli import compose  # noqa: E402
from mmint.explain import feature_relevance, group_relevance, load_run, make_groups  # noqa: E402
from mmint.explain.plots import plot_feature_heatmap, plot_group_top  # noqa: E402
from mmint.explain.relevance import dense_rows, feature_names, group_composition  # noqa: E402
from mmint.fit import run_fit  # noqa: E402
from mmint.io import write_json  # noqa: E402

GENE = "Lrrc38"
CLASS = "Pvalb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nsamples", type=int, default=100)
    parser.add_argument("--n-background", type=int, default=100)
    parser.add_argument("--run", default=str(ROOT / "runs" / "explain_patchseq" / "unitednet"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if not (args.reuse and (run / "metrics.json").exists()):
        cfg = compose(
            "fit",
            [
                "model=unitednet_patchseq",
                "data=patchseq_gouwen2020",
                f"model.max_epochs={args.epochs}",
                f"seed={args.seed}",
                "logger=none",
                "eval.scib=false",
                "trainer=cpu",
                "trainer.num_threads=1",
                "trainer.enable_progress_bar=false",
            ],
        )
        run_fit(cfg, run)
    fit_seconds = time.perf_counter() - t
    metrics = json.loads((run / "metrics.json").read_text())
    _, model, dm = load_run(run)
    sizes = {"nsamples": args.nsamples, "n_background": args.n_background, "seed": 0}

    # 2. the model group holding most Pvalb cells, and its driving features
    groups = make_groups(model, dm, "model")
    comp = group_composition(groups, dm)
    comp.to_csv(out / "group_composition.csv", index=False)
    pv = comp[(comp["annotation"] == "cell_class") & (comp["value"] == CLASS)]
    pv = pv.sort_values("n_cells", ascending=False)
    group = str(pv.iloc[0]["group"])
    members = comp[(comp["group"] == group) & (comp["annotation"] == "cell_class")]
    t = time.perf_counter()
    gtable, grec = group_relevance(
        model, dm, groups, n_explain=None, only_groups=[group], min_cells=1, **sizes
    )
    g_seconds = time.perf_counter() - t
    gtable.to_csv(out / "group_relevance.csv", index=False)
    plot_group_top(gtable, group, out / f"group_relevance_{group}.png", top_k=15)

    # 3. within the Pvalb cells: rna -> ephys for every ephys feature, ephys -> rna for Lrrc38
    classes = make_groups(model, dm, "class")
    t = time.perf_counter()
    common = dict(only_groups=[CLASS], n_explain=None, **sizes)
    to_ephys, rec1 = feature_relevance(
        model,
        dm,
        classes,
        pairs=["rna:ephys"],
        n_dst_features=None,
        top_src=25,
        src_features={"rna": [GENE]},
        **common,
    )
    to_gene, rec2 = feature_relevance(
        model,
        dm,
        classes,
        pairs=["ephys:rna"],
        n_dst_features=0,
        dst_features={"rna": [GENE]},
        top_src=None,
        **common,
    )
    f_seconds = time.perf_counter() - t
    frec = rec1 + rec2
    ftable = pd.concat([to_ephys, to_gene], ignore_index=True)
    ftable.to_csv(out / "feature_relevance.csv", index=False)
    plot_feature_heatmap(ftable, CLASS, "rna", "ephys", out / "heatmap_rna_to_ephys.png")

    lrrc = ftable[(ftable["src"] == "rna") & (ftable["src_feature"] == GENE)]
    lrrc = lrrc.sort_values("relevance", ascending=False)
    drivers = ftable[(ftable["src"] == "ephys") & (ftable["dst_feature"] == GENE)].sort_values(
        "rank"
    )
    cells = classes.cells(CLASS)
    gene = dense_rows(dm, "rna", cells)[:, feature_names(dm, "rna").index(GENE)]
    ephys = pd.DataFrame(dense_rows(dm, "ephys", cells), columns=feature_names(dm, "ephys"))
    corr = ephys.apply(lambda col: pd.Series(gene).corr(col, method="spearman"))
    corr = corr.rename("spearman").rename_axis("ephys_feature").reset_index()
    corr["abs"] = corr["spearman"].abs()
    corr = corr.sort_values("abs", ascending=False)
    corr.to_csv(out / "lrrc38_ephys_spearman.csv", index=False)

    records = pd.DataFrame(grec + frec)
    records.to_csv(out / "explainers.csv", index=False)
    top = {
        m: gtable[gtable["modality"] == m].nsmallest(10, "rank")[["feature", "relevance"]]
        for m in ("rna", "ephys", "morph")
    }
    summary = {
        "epochs": args.epochs,
        "best_epoch": metrics.get("best_epoch"),
        "fit_seconds": fit_seconds,
        "ari": metrics.get("ari"),
        "ari_class": metrics.get("ari_class"),
        "r2": metrics.get("r2"),
        "pvalb_group": group,
        "pvalb_group_composition": members[["value", "n_cells"]].values.tolist(),
        "pvalb_cells_total": int((dm.data.obs["cell_class"] == CLASS).sum()),
        "explainers": records["explainer"].value_counts().to_dict(),
        "seconds": {"group_relevance": g_seconds, "feature_relevance": f_seconds},
        "top_features": {m: v.values.tolist() for m, v in top.items()},
        "lrrc38_to_ephys": lrrc[["dst_feature", "relevance", "rank"]].head(10).values.tolist(),
        "ephys_to_lrrc38": drivers[["src_feature", "relevance", "rank"]].head(10).values.tolist(),
        "lrrc38_ephys_spearman": corr[["ephys_feature", "spearman"]].head(10).values.tolist(),
    }
    write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1, default=str))
    for m, v in top.items():
        print(f"\n### {m}\n" + v.to_string(index=False))
    print("\n### Lrrc38 -> ephys\n" + lrrc.head(10).to_string(index=False))
    print("\n### ephys -> Lrrc38\n" + drivers.head(10).to_string(index=False))
    print("\n### Spearman\n" + corr.head(10).to_string(index=False))


if __name__ == "__main__":
    main()
