"""Per model and dataset overrides (``model_data_overrides``) and the preset ablation suite's
composed configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmint.benchmark.grid import Suite, expand
from mmint.cli import compose_run
from mmint.data.registry import config_dir
from mmint.errors import InputError

PRESETS = {
    "patchseq_gouwen2020": "unitednet_patchseq",
    "dbitseq_mouse_embryo": "unitednet_dbitseq",
    "bmmc_multiome_neurips2021_starter": "unitednet_multiome",
}


def test_model_data_overrides_pick_a_config_file_for_one_model_and_dataset():
    suite = Suite(
        name="s",
        models=["unitednet"],
        datasets=["synthetic", "patchseq_gouwen2020"],
        seeds=[0],
        floor=["pca"],
        variants={"v": {"model.lr": 0.5}},
        model_overrides={"unitednet": {"model.lr": 0.2, "model.n_head": 3}},
        model_data_overrides={
            "unitednet": {"patchseq_gouwen2020": ["model=unitednet_patchseq", "model.n_head=2"]}
        },
    )
    runs = {(r.model, r.data): r for r in expand(suite)}
    syn, ps = runs["unitednet", "synthetic"], runs["unitednet", "patchseq_gouwen2020"]
    assert "model=unitednet" in syn.overrides and "++model.n_head=3" in syn.overrides
    # the file replaces the grid's model=unitednet; the run keeps the model's name
    assert "model=unitednet_patchseq" in ps.overrides and "model=unitednet" not in ps.overrides
    assert ps.name == "unitednet__patchseq_gouwen2020__v__seed0"
    # later wins: model_overrides < model_data_overrides < the variant's
    assert "model.n_head=2" in ps.overrides and "++model.n_head=3" not in ps.overrides
    assert "++model.lr=0.5" in ps.overrides
    assert "model=pca" in runs["pca", "patchseq_gouwen2020"].overrides
    cfg = compose_run(ps.overrides)
    assert cfg["model"]["name"] == "unitednet" and cfg["model"]["n_head"] == 2
    assert cfg["model"]["latent_dim"] == 68 and cfg["model"]["lr"] == 0.5


def test_model_data_overrides_unknown_file():
    with pytest.raises(InputError, match="unknown model config 'unitednet_nope'"):
        Suite(
            name="s",
            models=["unitednet"],
            datasets=["d"],
            seeds=[0],
            model_data_overrides={"unitednet": {"d": ["model=unitednet_nope"]}},
        )


def _presets_suite() -> Suite:
    raw = OmegaConf.load(Path(config_dir()) / "suite" / "ablation_unitednet_presets.yaml")
    return Suite.from_config(OmegaConf.to_container(raw.suite))


def test_preset_suite_grid():
    suite = _presets_suite()
    assert suite.reference == "paper" and suite.floor == ["pca", "wnn"]
    assert set(suite.datasets) == set(PRESETS) and suite.seeds == [0, 1, 2, 3, 4]
    assert len(suite.variants) >= 10 and set(suite.single_task_variants) <= set(suite.variants)
    runs = expand(suite)
    assert len(runs) == 3 * (len(suite.variants) * 5 + 2 * 5)
    for run in runs:
        model_files = [o for o in run.overrides if o.partition("=")[0] == "model"]
        expected = PRESETS[run.data] if run.model == "unitednet" else run.model
        assert model_files == [f"model={expected}"]


@pytest.mark.parametrize("data", sorted(PRESETS))
def test_preset_suite_composes_the_presets(data):
    """Each variant composes from the dataset's preset and changes only its own keys."""
    suite = _presets_suite()
    runs = {r.variant: r for r in expand(suite) if r.data == data and r.model == "unitednet"}
    preset = compose_run([f"model={PRESETS[data]}"])["model"]  # the preset as composed
    clustering = data != "bmmc_multiome_neurips2021_starter"
    paper = compose_run(runs["paper"].overrides)["model"]
    assert paper == {**preset, **({"group_mode": "clustering"} if clustering else {})}
    assert paper["task"] == ("unsupervised" if clustering else "supervised")
    changed = {
        "pgc_only": {"task": "pgc_only"},
        "group_only": {"task": "group_only", "cluster_update_encoders": True},
        "joint": {"task": "joint"},
        "no_gan": {"generator_weight": 0.0, "discriminator_weight": 0.0},
        "residual": {"encoder": "residual"},
        "pcgrad": {"loss_balancing": "pcgrad"},
    }
    for variant, keys in changed.items():
        model = compose_run(runs[variant].overrides)["model"]
        assert {k: model[k] for k in keys} == keys
        rest = {k: v for k, v in model.items() if k not in keys}
        assert rest == {k: v for k, v in paper.items() if k not in keys}, variant
