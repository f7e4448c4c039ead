"""Grid expansion: counts, names, override order, composed configs, built-in suites."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmint.benchmark.grid import (
    Suite,
    dedupe,
    expand,
    format_value,
    missing_dataset,
    passthrough,
    suite_names,
    to_overrides,
)
from mmint.cli import compose_run
from mmint.data.registry import config_dir
from mmint.errors import InputError

from .conftest import tiny_suite

BUILT_IN = [
    "quick",
    "real",
    "ablation_unitednet",
    "ablation_unitednet_presets",
    "ablation_cvqvae",
    "ablation_multivi",
]


def test_expand_counts_names_and_floor():
    suite = Suite(
        name="s",
        models=["unitednet", "multivi"],
        datasets=["synthetic", "other"],
        seeds=[0, 1, 2],
        variants={"a": {}, "b": ["model.x=1"]},
    )
    runs = expand(suite)
    # 2 models x 2 variants x 3 seeds + the pca floor (default variant only) x 3 seeds, per dataset
    assert len(runs) == 2 * (2 * 2 * 3 + 3)
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    assert names[0] == "unitednet__synthetic__a__seed0"
    assert "pca__other__default__seed2" in names
    assert not any(n.startswith("pca__") and "__b__" in n for n in names)
    assert suite.reference == "a"


def test_override_order_later_wins():
    suite = Suite(
        name="s",
        models=["m"],
        datasets=["d"],
        seeds=[3],
        floor=[],
        variants={"v": {"model.lr": 0.5}},
        overrides={"model.lr": 0.1, "eval.kbet": False},
        model_overrides={"m": {"model.lr": 0.2}},
        data_overrides={"d": ["+data.x=1"]},
    )
    (run,) = expand(suite, ["logger=csv", "model=ignored", "model.lr=0.9"])
    ov = run.overrides
    assert "model=m" in ov and "model=ignored" not in ov
    assert "seed=3" in ov and "variant=v" in ov and "data=d" in ov
    assert "++logger.group=s" in ov and "logger=csv" in ov and "+data.x=1" in ov
    assert [o for o in ov if o.lstrip("+").startswith("model.lr")] == ["model.lr=0.9"]
    assert "++eval.kbet=false" in ov


def test_overrides_reach_the_composed_config():
    suite = tiny_suite(
        seeds=[1],
        variants={"small": {"model.n_components": 5}},
        model_overrides={"pca": {"model.ridge_alpha": 2.5}},
        floor=[],
    )
    (run,) = expand(suite, ["logger=csv"])
    cfg = compose_run(run.overrides)
    assert cfg["model"]["name"] == "pca" and cfg["model"]["n_components"] == 5
    assert cfg["model"]["ridge_alpha"] == 2.5
    assert cfg["seed"] == 1 and cfg["variant"] == "small" and cfg["command"] == "fit"
    assert cfg["data"]["simulate"]["n_cells"] == 300
    assert cfg["data"]["simulate"]["n_features"] == {"rna": 100, "atac": 200, "ephys": 20}
    assert cfg["logger"] == {"kind": "csv", "group": "tiny"}
    assert cfg["eval"]["scib"] is False and cfg["trainer"]["enable_progress_bar"] is False
    assert "hydra" not in cfg


def test_value_formatting_and_helpers():
    assert format_value(True) == "true" and format_value(None) == "null"
    assert format_value(0.0) == "0.0" and format_value("mmd") == "mmd"
    assert format_value("a b") == "'a b'" and format_value("null") == "'null'"
    assert format_value({"rna": 1, "atac": [1, 2]}) == "{rna:1,atac:[1,2]}"
    assert to_overrides({"model.vq": False}) == ["++model.vq=false"]
    assert to_overrides(["trainer=cpu"]) == ["trainer=cpu"] and to_overrides(None) == []
    assert dedupe(["a=1", "b=2", "++a=3"]) == ["b=2", "++a=3"]
    keep, dropped = passthrough(
        [
            "logger=csv",
            "suite.seeds=[0]",
            "hydra.run.dir=x",
            "seed=1",
            "command=benchmark",
            "+data.simulate.n_cells=9",
        ]
    )
    assert keep == ["logger=csv", "+data.simulate.n_cells=9"]
    assert len(dropped) == 4


def test_bad_suite_config():
    with pytest.raises(InputError, match="no suite given"):
        Suite.from_config(None)
    with pytest.raises(InputError, match="reference variant"):
        Suite(name="s", models=["m"], datasets=["d"], seeds=[0], variants={"a": {}}, reference="b")


def test_missing_shared_dataset(monkeypatch, tmp_path):
    monkeypatch.delenv("MMINT_DATA_DIR", raising=False)
    assert missing_dataset("synthetic") is None
    assert "not set" in missing_dataset("patchseq_gouwen2020")
    monkeypatch.setenv("MMINT_DATA_DIR", str(tmp_path))
    assert "not found" in missing_dataset("patchseq_gouwen2020")


def _suite_node(name: str) -> dict:
    raw = OmegaConf.load(Path(config_dir()) / "suite" / f"{name}.yaml")
    assert OmegaConf.to_container(raw.hydra)["run"]["dir"] == "runs/benchmark/${suite.name}"
    return OmegaConf.to_container(raw.suite)


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_suites(name):
    assert name in suite_names()
    suite = Suite.from_config(_suite_node(name))
    assert suite.name == name
    assert "pca" in suite.all_models
    assert suite.reference in suite.variants
    assert set(suite.single_task_variants) <= set(suite.variants)
    runs = expand(suite)
    n_models = len([m for m in suite.all_models if m not in suite.floor])
    per_data = n_models * len(suite.variants) * len(suite.seeds) + len(suite.floor) * len(
        suite.seeds
    )
    assert len(runs) == len(suite.datasets) * per_data
    if name == "quick":
        assert suite.datasets == ["synthetic"] and suite.seeds == [0, 1] and suite.n_jobs == 2
        assert set(suite.models) >= {"unitednet", "multivi", "cvqvae", "pca"}
        assert "++eval.kbet=false" in runs[0].overrides
    if name == "real":
        assert "synthetic" not in suite.datasets
        # the two large datasets (Liu 2021: 30,534 CITE-seq cells; SNARE-seq: 10,309) are in
        assert {
            "patchseq_gouwen2020",
            "pbmc_covid_cite_liu2021",
            "snareseq_mouse_cortex_chen2019",
        } <= set(suite.datasets)
    if name == "ablation_unitednet":
        assert set(suite.variants) == {
            "alternating_epoch",
            "alternating_batch",
            "group_only",
            "pgc_only",
            "joint",
            "no_gan",
            "no_contrastive",
        }
        assert suite.reference == "alternating_epoch"


def test_suite_composes_with_the_root_config():
    """``mmint benchmark suite=quick`` composes (``+suite=`` until the root config lists the
    group) and moves the run dir to runs/benchmark/quick."""
    from hydra import compose, initialize_config_dir

    defaults = OmegaConf.load(Path(config_dir()) / "config.yaml").defaults
    listed = any("suite" in str(d) for d in defaults)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["command=benchmark", "model=pca", f"{'' if listed else '+'}suite=quick"],
            return_hydra_config=True,
        )
    assert cfg.suite.name == "quick"
    assert cfg.hydra.run.dir == "runs/benchmark/quick"


def test_comparator_suites():
    """real_comparators runs every comparator beside the four integrators and the floor,
    except the model/dataset pairs it skips (with a reason); transfer holds out each batch."""
    from mmint.models import MODELS

    suite = Suite.from_config(_suite_node("real_comparators"))
    comparators = {"wnn", "mofa", "svd_ridge", "knn_transfer", "scvi_multivi", "scvi_totalvi"}
    assert comparators | {"scvi_scanvi", "unitednet", "multivi", "cvqvae", "pca"} == set(
        suite.all_models
    )
    assert set(suite.all_models) <= set(MODELS)
    runs = expand(suite)
    pairs = {(r.model, r.data) for r in runs}
    skipped = {(m, d) for m, ds in suite.skip.items() for d in ds}
    assert not pairs & skipped
    assert len(pairs) == len(suite.all_models) * len(suite.datasets) - len(skipped)
    assert len(runs) == len(pairs) * len(suite.seeds)
    notes = suite.skip_notes()
    assert len(notes) == len(skipped) and all("not run" in n for n in notes)
    transfer = Suite.from_config(_suite_node("transfer"))
    assert transfer.floor == [] and set(transfer.models) == {
        "unitednet",
        "scvi_scanvi",
        "knn_transfer",
    }
    runs = expand(transfer)
    assert len(runs) == 3 * 2 * 2 * 3
    unitednet = next(r for r in runs if r.model == "unitednet")
    assert "++model.stage=transfer" in unitednet.overrides
    assert "++split.kind=holdout_batch" in unitednet.overrides
