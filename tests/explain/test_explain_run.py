"""``mmint explain`` end to end on a run directory fitted in the test."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from mmint.cli import compose
from mmint.errors import InputError
from mmint.explain.cli import main
from mmint.explain.relevance import FEATURE_COLUMNS, GROUP_COLUMNS, RECORD_COLUMNS
from mmint.explain.runs import load_run, options
from mmint.fit import run_fit

torch.set_num_threads(1)

TINY_DATA = [
    "data.simulate.n_cells=200",
    "data.simulate.n_types=4",
    "data.simulate.n_major=2",
    "+data.simulate.n_features={rna: 40, atac: 60, ephys: 10}",
    "+data.simulate.n_links=4",
]
SMALL = {
    "n_explain": 8,
    "n_background": 8,
    "nsamples": 8,
    "n_dst_features": 2,
    "top_src": 5,
    "pairs": ["rna:atac", "ephys:rna"],
    "min_cells": 3,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("unitednet_run")
    cfg = compose(
        "fit",
        [
            "model=unitednet",
            "model.max_epochs=2",
            "logger=none",
            "eval.scib=false",
            "eval.leiden=false",
            "eval.every_n_epochs=100",
            "trainer=cpu",
            "trainer.enable_progress_bar=false",
            *TINY_DATA,
        ],
    )
    run_fit(cfg, run)
    return run


def test_explain_writes_tidy_tables(run_dir, capsys):
    main({"run": str(run_dir), "explain": SMALL, "trainer": {"num_threads": 1}})
    assert "written to" in capsys.readouterr().out
    out = run_dir / "explain"
    groups = pd.read_csv(out / "group_relevance.csv")
    assert list(groups.columns) == GROUP_COLUMNS
    assert set(groups["modality"]) == {"rna", "atac", "ephys"}
    sizes = groups.groupby(["group", "modality"]).size().unstack()
    assert (sizes["rna"] == 40).all() and (sizes["atac"] == 60).all()
    assert (groups["relevance"] >= 0).all()
    for _, block in groups.groupby(["group", "modality"]):
        assert block["rank"].min() == 1
        assert block.sort_values("rank")["relevance"].is_monotonic_decreasing
    feats = pd.read_csv(out / "feature_relevance.csv")
    assert list(feats.columns) == FEATURE_COLUMNS
    assert set(zip(feats["src"], feats["dst"], strict=True)) == {("rna", "atac"), ("ephys", "rna")}
    per_dst = feats.groupby(["group", "src", "dst", "dst_feature"])
    assert per_dst.size().max() == 5 and per_dst["rank"].min().eq(1).all()
    assert feats.groupby(["group", "src", "dst"])["dst_feature"].nunique().max() == 2
    records = pd.read_csv(out / "explainers.csv")
    assert list(records.columns) == RECORD_COLUMNS
    # UnitedNet's encoders end in LayerNorm: shap's DeepExplainer has no rule for it
    assert set(records["explainer"]) == {"gradient"}
    assert records["reason"].str.contains("LayerNorm").all()
    comp = pd.read_csv(out / "group_composition.csv")
    assert set(comp["annotation"]) == {"cell_type", "major_type"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"] == "model" and summary["explainers"]["gradient"] == len(records)
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert any(p.startswith("group_relevance_") for p in plots)
    assert any(p.endswith("_rna_to_atac.png") for p in plots)
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_explain_by_labels_without_plots(run_dir, tmp_path):
    out = tmp_path / "by_class"
    opts = {**SMALL, "groups": "class", "group_relevance": False, "plots": False}
    main({"run": str(run_dir), "explain": {**opts, "out": str(out)}})
    feats = pd.read_csv(out / "feature_relevance.csv")
    assert set(feats["group"]) == {"M0", "M1"}
    assert not (out / "group_relevance.csv").exists()


def test_explain_command_line_leaves_no_hydra_folder(run_dir, tmp_path, monkeypatch):
    from mmint.cli import main as mmint_main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cli"
    mmint_main(
        [
            "explain",
            f"run={run_dir}",
            f"explain.out={out}",
            "explain.group_relevance=false",
            "explain.plots=false",
            "explain.pairs=['rna:atac']",
            "explain.n_explain=8",
            "explain.n_background=8",
            "explain.nsamples=8",
            "explain.n_dst_features=2",
            "explain.min_cells=3",
        ]
    )
    assert (out / "feature_relevance.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # no runs/, no .hydra
    assert not list(run_dir.glob("**/.hydra/overrides.yaml"))


def test_load_run_restores_split_and_checks_it(run_dir, tmp_path):
    cfg, model, dm = load_run(run_dir)
    split = json.loads((run_dir / "split.json").read_text())
    assert [str(c) for c in dm.data.names[dm.split["test"]]] == split["test"]
    assert model.name == "unitednet" and cfg["model"]["name"] == "unitednet"
    assert load_run(run_dir, "last")[1].name == "unitednet"
    with pytest.raises(InputError, match="no checkpoints/nope.ckpt"):
        load_run(run_dir, "nope")
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad, ignore=shutil.ignore_patterns("explain", "*.h5*"))
    split["train"], split["test"] = split["test"], split["train"]
    (bad / "split.json").write_text(json.dumps(split))
    with pytest.raises(InputError, match="split"):
        load_run(bad)


def test_bad_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no run directory"):
        main({"explain": {}})
    with pytest.raises(InputError, match="not a run directory"):
        main({"run": str(tmp_path)})
    with pytest.raises(InputError, match="unknown explain option"):
        options({"n_cells": 3})


def test_root_config_explain_keys_are_known_options():
    cfg = compose("explain", [])
    assert "run" in cfg and cfg.run is None
    given = dict(cfg.explain)
    assert options(given)  # every key of mmint/conf/config.yaml's explain: is a known option
    for key, value in given.items():
        assert value == options()[key], key  # and its default is the library's
