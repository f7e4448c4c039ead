"""Planted-link recovery of ``mmint.explain`` on the default synthetic dataset.

For each seed: fit UnitedNet (``mmint.fit.run_fit``, ``logger=none``, no scIB), explain the
translations within the major groups (``groups=class``: a link is active in exactly one major
group), rank each planted link's source among all src features for its target, and compare
with direct checks (data correlation, correlation of the source with the model's prediction
of the target, and the plain input gradient). Rank stability: Spearman of the relevance
between seeds.

    .venv/bin/python experiments/explain_synthetic/run.py --epochs 150 --seeds 0 1 2

Writes ``--out`` (``summary_<model>.json``, ``link_ranks_<model>.csv``,
``direct_checks_<model>.csv``, ``feature_relevance_top20_<model>_seed<s>.csv``) and prints the
tables of the README. Runs are kept under ``--runs`` and reused with ``--reuse``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mmint.cli import compose  # noqa: E402
from mmint.explain import feature_relevance, load_run, make_groups, translator  # noqa: E402
from mmint.explain.links import link_activity, link_ranks, rank_stability, recovery  # noqa: E402
from mmint.explain.relevance import dense_rows, explain_cells  # noqa: E402
from mmint.fit import run_fit  # noqa: E402
from mmint.io import write_json  # noqa: E402

K = 10


def fit(model: str, seed: int, epochs: int, run_dir: Path, reuse: bool, extra: list[str]) -> None:
    """Fit one run directory (skipped when it exists and ``reuse``)."""
    if reuse and (run_dir / "metrics.json").exists():
        return
    cfg = compose(
        "fit",
        [
            f"model={model}",
            "logger=none",
            "eval.scib=false",
            "eval.leiden=false",
            f"model.max_epochs={epochs}",
            f"seed={seed}",
            "trainer=cpu",
            "trainer.num_threads=1",
            "trainer.enable_progress_bar=false",
            *extra,
        ],
    )
    run_fit(cfg, run_dir)


def direct_checks(model, dm, groups, links, activity) -> pd.DataFrame:
    """Per (link, active group): data correlation of source and target, correlation of the
    source with the model's prediction of the target, the prediction's R2, and the rank of the
    source by the plain gradient (mean |d target / d source| x std of the source)."""
    rows = []
    for row in activity[activity["active"]].itertuples(index=False):
        link = links.iloc[row.link]
        src, dst = link.source_modality, link.target_modality
        src_names = _names(dm, src)
        dst_names = _names(dm, dst)
        si, di = src_names.index(link.source_feature), dst_names.index(link.target_feature)
        cells = explain_cells(dm, groups, row.group, (src, dst), "all")
        x = torch.from_numpy(dense_rows(dm, src, cells)).requires_grad_(True)
        y = dense_rows(dm, dst, cells)[:, di]
        net = translator(model, src, dst)
        pred = net(x)[:, di]
        (grad,) = torch.autograd.grad(pred.sum(), x)
        sens = grad.abs().mean(0).numpy() * x.detach().numpy().std(0)
        pred = pred.detach().numpy()
        xs = x.detach().numpy()[:, si]
        ss_res, ss_tot = ((y - pred) ** 2).sum(), ((y - y.mean()) ** 2).sum()
        rows.append(
            {
                "link": int(row.link),
                "source": f"{src}:{link.source_feature}",
                "target": f"{dst}:{link.target_feature}",
                "group": row.group,
                "corr_data": float(np.corrcoef(xs, y)[0, 1]),
                "corr_source_prediction": float(np.corrcoef(xs, pred)[0, 1]),
                "r2_target": float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan"),
                "gradient_rank": int((sens > sens[si]).sum() + 1),
                "n_src": len(src_names),
            }
        )
    return pd.DataFrame(rows)


def data_ranks(dm, groups, links, activity) -> pd.DataFrame:
    """Model-free reference: rank of each link's source among all src features by |Pearson
    correlation| with the target over the cells of the active group (can the data show it?)."""
    rows = []
    for row in activity[activity["active"]].itertuples(index=False):
        link = links.iloc[row.link]
        src, dst = link.source_modality, link.target_modality
        cells = explain_cells(dm, groups, row.group, (src, dst), "all")
        x = dense_rows(dm, src, cells).astype(np.float64)
        y = dense_rows(dm, dst, cells)[:, _names(dm, dst).index(link.target_feature)]
        xc, yc = x - x.mean(0), y - y.mean()
        denom = np.sqrt((xc**2).sum(0) * (yc**2).sum()) + 1e-12
        corr = np.abs(xc.T @ yc) / denom
        si = _names(dm, src).index(link.source_feature)
        rows.append(
            {
                "link": int(row.link),
                "group": row.group,
                "data_corr_rank": int((corr > corr[si]).sum() + 1),
            }
        )
    return pd.DataFrame(rows)


def control_recovery(dm, groups, links, activity, args) -> pd.DataFrame:
    """Positive control: a direct src -> dst MLP (Linear-BatchNorm-ReLU, explained by
    DeepExplainer) trained on the training cells to predict only the link targets of dst,
    explained and ranked exactly as the integrators' translations."""
    from torch import nn

    from mmint.explain.relevance import _background, _rank, shap_values

    rows = []
    rng = np.random.default_rng(0)
    for (src, dst), sub in links.groupby(["source_modality", "target_modality"]):
        targets = sorted(set(links.loc[links["target_modality"] == dst, "target_feature"]))
        t_idx = [_names(dm, dst).index(t) for t in targets]
        train, val = dm.cells("train"), dm.cells("val")
        x, y = (
            torch.from_numpy(dense_rows(dm, src, train)),
            torch.from_numpy(dense_rows(dm, dst, train)[:, t_idx]),
        )
        xv, yv = (
            torch.from_numpy(dense_rows(dm, src, val)),
            torch.from_numpy(dense_rows(dm, dst, val)[:, t_idx]),
        )
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Linear(x.shape[1], 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, len(targets))
        )
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
        best, state = float("inf"), None
        for _ in range(300):
            net.train()
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            net.eval()
            with torch.no_grad():
                v = float(((net(xv) - yv) ** 2).mean())
            if v < best:
                best, state = v, {k: t.clone() for k, t in net.state_dict().items()}
        net.load_state_dict(state)
        net.eval()
        for li, link in sub.iterrows():
            act = activity[(activity["link"] == li) & activity["active"]]
            for group in act["group"]:
                cells = explain_cells(dm, groups, group, (src, dst), "all")
                cells = np.sort(rng.choice(cells, min(args.n_explain, len(cells)), replace=False))
                bg = _background(
                    "group",
                    lambda c, m=src: dense_rows(dm, m, c),
                    groups,
                    dm,
                    (src, dst),
                    group,
                    args.n_background,
                    rng,
                )
                res = shap_values(net, dense_rows(dm, src, cells), bg, nsamples=args.nsamples)
                imp = res.importance()[:, targets.index(link.target_feature)]
                rank = _rank(imp)[_names(dm, src).index(link.source_feature)]
                rows.append(
                    {
                        "link": int(li),
                        "group": group,
                        "control_rank": int(rank),
                        "control_explainer": res.explainer,
                    }
                )
    return pd.DataFrame(rows)


def _names(dm, m: str) -> list[str]:
    from mmint.explain.relevance import feature_names

    return feature_names(dm, m)


def explain_seed(
    run_dir: Path, args, explain_seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Relevance table, link ranks, direct checks and recovery summary of one run."""
    _, model, dm = load_run(run_dir, args.checkpoint)
    links = dm.data.extras["links"]
    groups = make_groups(model, dm, "class")
    targets: dict[str, list[str]] = {}
    for link in links.itertuples(index=False):
        targets.setdefault(link.target_modality, []).append(link.target_feature)
    pairs = sorted({f"{r.source_modality}:{r.target_modality}" for r in links.itertuples()})
    t = time.perf_counter()
    table, records = feature_relevance(
        model,
        dm,
        groups,
        pairs=pairs,
        n_explain=args.n_explain,
        n_background=args.n_background,
        n_dst_features=0,
        dst_features=targets,
        top_src=None,
        explainer=args.explainer,
        nsamples=args.nsamples,
        seed=explain_seed,
    )
    seconds = time.perf_counter() - t
    activity = link_activity(links, groups, dm.data.obs["cell_type"].astype(str).to_numpy())
    n_src = {m: int(n) for m, n in model.spec.n_features.items()}
    ranks = link_ranks(table, links, activity, n_src)
    summary = recovery(ranks, K)
    summary["explainers"] = pd.Series([r["explainer"] for r in records]).value_counts().to_dict()
    summary["explain_seconds"] = seconds
    checks = direct_checks(model, dm, groups, links, activity)
    checks = checks.merge(data_ranks(dm, groups, links, activity), on=["link", "group"])
    return table, ranks, checks, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="unitednet")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-explain", type=int, default=100)
    parser.add_argument("--n-background", type=int, default=100)
    parser.add_argument("--nsamples", type=int, default=100)
    parser.add_argument("--explainer", default="auto")
    parser.add_argument("--runs", help="default: runs/explain_synthetic_e<epochs>")
    parser.add_argument("--out", help="default: experiments/explain_synthetic/results_e<epochs>")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--checkpoint", default="best", help="best (as mmint explain) or last")
    parser.add_argument("--fit-only", action="store_true")
    parser.add_argument("--no-control", action="store_true", help="skip the direct-MLP control")
    parser.add_argument(
        "--no-explain-repeat",
        action="store_true",
        help="skip re-explaining the first run with another explanation seed",
    )
    parser.add_argument("overrides", nargs="*", help="extra fit overrides (model.*=...)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.runs = args.runs or str(ROOT / "runs" / f"explain_synthetic_e{args.epochs}")
    suffix = "" if args.checkpoint == "best" else f"_{args.checkpoint}"
    out = Path(args.out or Path(__file__).parent / f"results_e{args.epochs}{suffix}")
    out.mkdir(parents=True, exist_ok=True)
    tables, all_ranks, all_checks, per_seed = [], [], [], {}
    for seed in args.seeds:
        run_dir = Path(args.runs) / f"{args.model}_seed{seed}"
        t = time.perf_counter()
        fit(args.model, seed, args.epochs, run_dir, args.reuse, args.overrides)
        fit_seconds = time.perf_counter() - t
        if args.fit_only:
            continue
        table, ranks, checks, summary = explain_seed(run_dir, args)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        summary.update(
            fit_seconds=fit_seconds,
            r2=metrics.get("r2"),
            ari=metrics.get("ari"),
            best_epoch=metrics.get("best_epoch"),
            run=str(run_dir),
        )
        per_seed[seed] = summary
        tables.append(table)
        all_ranks.append(ranks.assign(seed=seed))
        all_checks.append(checks.assign(seed=seed))
        # the top 20 src features per target (the true sources' ranks are in link_ranks_*.csv)
        top = table[table["rank"] <= 20]
        top.to_csv(out / f"feature_relevance_top20_{args.model}_seed{seed}.csv", index=False)
        print(f"seed {seed}: {json.dumps(summary, default=str)}", flush=True)
    if args.fit_only:
        return
    repeat = None
    if not args.no_explain_repeat:
        # the same model explained with other cells, backgrounds and samples: SHAP's own noise
        first = Path(args.runs) / f"{args.model}_seed{args.seeds[0]}"
        again, again_ranks, _, again_summary = explain_seed(first, args, explain_seed=1)
        repeat = {
            "stability": rank_stability([tables[0], again]),
            "recall@10": again_summary["recall@10"],
        }
    control = None
    if not args.no_control:
        _, model0, dm0 = load_run(Path(args.runs) / f"{args.model}_seed{args.seeds[0]}")
        links0 = dm0.data.extras["links"]
        groups0 = make_groups(model0, dm0, "class")
        act0 = link_activity(links0, groups0, dm0.data.obs["cell_type"].astype(str).to_numpy())
        ctrl = control_recovery(dm0, groups0, links0, act0, args)
        ctrl.to_csv(out / "control_link_ranks.csv", index=False)
        control = {
            "recall@10": float((ctrl["control_rank"] <= K).mean()),
            "median_rank": float(ctrl["control_rank"].median()),
            "explainers": ctrl["control_explainer"].value_counts().to_dict(),
        }
        print(f"control: {control}", flush=True)
    ranks = pd.concat(all_ranks, ignore_index=True)
    checks = pd.concat(all_checks, ignore_index=True)
    ranks.to_csv(out / f"link_ranks_{args.model}.csv", index=False)
    checks.to_csv(out / f"direct_checks_{args.model}.csv", index=False)
    pooled = recovery(ranks.assign(link=ranks["seed"] * 1000 + ranks["link"]), K)
    result = {
        "model": args.model,
        "epochs": args.epochs,
        "checkpoint": args.checkpoint,
        "seeds": args.seeds,
        "sizes": {
            "n_explain": args.n_explain,
            "n_background": args.n_background,
            "nsamples": args.nsamples,
        },
        "per_seed": per_seed,
        "pooled": pooled,
        "stability": rank_stability(tables) if len(tables) > 1 else None,
        "explain_repeat_first_seed": repeat,
        "control_direct_mlp": control,
        "recall@10_by_source": {
            m: float((sub["rank"] <= K).mean())
            for m, sub in ranks[ranks["active"]].groupby("source_modality")
        },
        "direct_checks_mean": checks.drop(columns=["link", "source", "target", "group"])
        .mean(numeric_only=True)
        .to_dict(),
        "gradient_recall@10": float((checks["gradient_rank"] <= K).mean()),
        "data_corr_recall@10": float((checks["data_corr_rank"] <= K).mean()),
    }
    write_json(out / f"summary_{args.model}.json", result)
    print(json.dumps(result, indent=2, default=str))
    cols = ["seed", "link", "source_modality", "source_feature", "target_modality"]
    act = ranks[ranks["active"]]
    merged = act.merge(checks.drop(columns=["group", "n_src"]), on=["seed", "link"], how="left")
    print(
        merged[
            [
                *cols,
                "target_feature",
                "group",
                "rank",
                "n_src",
                "gradient_rank",
                "data_corr_rank",
                "corr_data",
                "corr_source_prediction",
                "r2_target",
            ]
        ].to_string(index=False)
    )


if __name__ == "__main__":
    main()
