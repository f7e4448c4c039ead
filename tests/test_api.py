"""The Python API (``mmint.fit``, ``Run``, ``mmint.load_run``, ``mmint.validate``) against the
command line: same data and seed -> same metrics; latents written back by cell name; bad
arguments -> the command line's one line as :class:`~mmint.errors.InputError`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

import mmint
from mmint.errors import InputError

MMINT = str(Path(sys.executable).with_name("mmint"))
KINDS = {"rna": "counts", "atac": "binary", "ephys": "continuous"}
#: the same tiny settings through the API (keywords) and the command line (overrides)
TINY = {
    "logger": "none",
    "model__max_epochs": 2,
    "eval__scib": False,
    "eval__leiden": False,
    "trainer__num_threads": 1,
    "data__kinds": KINDS,
    "data__label_key": "cell_type",
    "data__batch_key": "batch",
}
TINY_CLI = [
    "logger=none",
    "model.max_epochs=2",
    "eval.scib=false",
    "eval.leiden=false",
    "trainer.num_threads=1",
    "data.kinds={rna: counts, atac: binary, ephys: continuous}",
    "data.label_key=cell_type",
    "data.batch_key=batch",
]
#: metrics.json keys that differ between two identical fits (time, memory, file names)
# the config hash (and the reuse key built on it) covers the data paths, which differ
VARYING = {
    "fit_seconds",
    "eval_seconds",
    "eval_cpu_seconds",
    "peak_rss_mb",
    "seconds_per_epoch",
    "cells_per_second",
    "cpu_seconds_per_epoch",
    "config_hash",
    "reuse",
}


def _mudata(sim) -> md.MuData:
    md.set_options(pull_on_update=False)
    mdata = md.MuData({m: a.copy() for m, a in sim.adatas.items()})
    for col in ("cell_type", "batch", "major_type"):
        mdata.obs[col] = sim.adatas["rna"].obs[col].to_numpy()
    return mdata


@pytest.fixture(scope="module")
def mdata(tiny_sim) -> md.MuData:
    return _mudata(tiny_sim)


@pytest.fixture(scope="module")
def api_run(mdata, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return mmint.fit(mdata, model="multivi", seed=3, out=out, **TINY)


@pytest.fixture(scope="module")
def cli_metrics(mdata, tmp_path_factory):
    """``mmint fit`` (the installed script) on the same MuData written to a file."""
    folder = tmp_path_factory.mktemp("cli")
    mdata.write_h5mu(folder / "data.h5mu")
    args = [MMINT, "fit", "model=multivi", "seed=3", "data=custom", "data.paths=data.h5mu"]
    env = {**os.environ, "CI": "true", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [*args, *TINY_CLI, f"hydra.run.dir={folder / 'run'}"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((folder / "run" / "metrics.json").read_text())


def test_fit_on_a_mudata_equals_the_command_line_on_its_file(api_run, cli_metrics):
    api = {k: v for k, v in api_run.metrics.items() if k not in VARYING}
    cli = {k: v for k, v in cli_metrics.items() if k not in VARYING}
    assert api["status"] == "ok" and api["seed"] == 3
    assert api == cli
    # what the reuse key covers besides the config hash: the same model and the same data
    same = {k: v for k, v in api_run.metrics["reuse"].items() if k != "key"}
    assert same == {k: v for k, v in cli_metrics["reuse"].items() if k != "key"}
    # the run directory is the command line's
    for name in ("config.yaml", "split.json", "checkpoints/best.ckpt", "outputs.h5mu"):
        assert (api_run.dir / name).exists(), name


def test_run_latent_is_the_outputs(api_run):
    out = md.read_h5mu(api_run.dir / "outputs.h5mu")
    assert list(api_run.latent.index) == list(out.obs_names)
    np.testing.assert_array_equal(api_run.latent.to_numpy(), out.obsm["X_multivi"])
    assert mmint.load_run(api_run.dir).metrics == api_run.metrics


def test_write_to_matches_cells_by_name(api_run, mdata):
    rng = np.random.default_rng(0)
    shuffled = mdata[rng.permutation(mdata.n_obs)].copy()
    assert list(shuffled.obs_names) != list(api_run.latent.index)
    api_run.write_to(shuffled)
    out = md.read_h5mu(api_run.dir / "outputs.h5mu")
    truth = pd.DataFrame(out.obsm["X_multivi"], index=out.obs_names)
    np.testing.assert_array_equal(shuffled.obsm["X_multivi"], truth.loc[shuffled.obs_names])
    split = out.obs["split"].astype(str)  # multivi has no group head: no multivi_group
    assert "multivi_group" not in shuffled.obs
    assert (shuffled.obs["split"].astype(str) == split.loc[shuffled.obs_names]).all()


def test_write_to_an_anndata_with_unknown_cells(api_run, mdata):
    rna = mdata["rna"][:10].copy()
    rna.obs_names = [*rna.obs_names[:5], *[f"new{i}" for i in range(5)]]
    api_run.write_to(rna)
    z = rna.obsm["X_multivi"]
    assert np.isfinite(z[:5]).all() and np.isnan(z[5:]).all()
    rna.obs_names = [f"other{i}" for i in range(10)]
    with pytest.raises(InputError, match="none of the 10 cells are in the run"):
        api_run.write_to(rna)


def test_predict_gives_the_run_latents_of_its_own_cells(api_run, mdata):
    test = api_run.obs.index[api_run.obs["split"] == "test"]
    new = mdata[test].copy()
    pred = api_run.predict(new, out=api_run.dir / "predict_test")
    assert pred.summary["n_cells"] == len(test)
    np.testing.assert_allclose(
        pred.latent.loc[test].to_numpy(), api_run.latent.loc[test].to_numpy(), atol=1e-5
    )


# ------------------------------------------------------------------ bad arguments
def _cli_error(argv: list[str], capsys) -> str:
    from mmint.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err.removeprefix("error: ")


def test_unknown_model(capsys):
    line = _cli_error(["fit", "model=multivy"], capsys)
    with pytest.raises(InputError) as err:
        mmint.fit("synthetic", model="multivy")
    assert str(err.value) == line and "unknown model 'multivy'" in line


def test_unknown_key(capsys, tmp_path):
    line = _cli_error(["fit", "model=pca", "model.max_epoch=3"], capsys)
    with pytest.raises(InputError) as err:
        mmint.fit("synthetic", model="pca", out=tmp_path / "run", model__max_epoch=3)
    assert str(err.value) == line and "unknown config key 'model.max_epoch'" in line
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_new_key_inside_a_dict_value(capsys):
    # the key exists (suite.variants) but the value brings a key it lacks: say which, and how
    # to add it (a '+' merges; '~' then '+' replaces), not "unknown config key"
    line = _cli_error(
        ["benchmark", "suite=wide_input", "suite.variants={mine: {model.lr: 0.01}}"], capsys
    )
    assert line.startswith("'suite.variants' has no key 'mine' (suite.variants=) - ")
    assert "+suite.variants=<value>" in line and "~suite.variants +suite.variants" in line


def test_unknown_dataset(capsys):
    line = _cli_error(["fit", "data=synthetc"], capsys)
    with pytest.raises(InputError) as err:
        mmint.validate("synthetc")
    assert str(err.value) == line


def test_data_without_shared_cells(tiny_sim, tmp_path, capsys, monkeypatch):
    mods = {m: a.copy() for m, a in tiny_sim.adatas.items() if m != "ephys"}
    mods["atac"].obs_names = [f"other{i}" for i in range(mods["atac"].n_obs)]
    disjoint = md.MuData(mods)
    disjoint.write_h5mu(tmp_path / "disjoint.h5mu")
    kinds = {"rna": "counts", "atac": "binary"}
    args = ["data=custom", "data.paths=disjoint.h5mu", "data.kinds={rna: counts, atac: binary}"]
    monkeypatch.chdir(tmp_path)
    line = _cli_error(["validate", "model=pca", *args], capsys)
    with pytest.raises(InputError) as err:
        mmint.validate(tmp_path / "disjoint.h5mu", model="pca", data__kinds=kinds)
    assert str(err.value) == line and line.startswith("cells differ")
    # in memory: the same line, naming the MuData where the command line names its file
    expected = line.replace(str(tmp_path / "disjoint.h5mu"), "MuData")
    with pytest.raises(InputError) as err:
        mmint.validate(disjoint, model="pca", data__kinds=kinds)
    assert str(err.value) == expected
    with pytest.raises(InputError) as err:
        mmint.fit(disjoint, model="pca", out=tmp_path / "run", logger="none", data__kinds=kinds)
    assert str(err.value) == expected


def test_load_run_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="not a run directory"):
        mmint.load_run(tmp_path)


def test_import_mmint_is_light():
    code = "import sys, mmint; print(sorted({'torch', 'hydra', 'lightning'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_fit_and_benchmark_are_functions_and_modules():
    import mmint.benchmark.grid
    import mmint.fit
    from mmint.api.bench import benchmark
    from mmint.benchmark.grid import Suite
    from mmint.fit import run_fit

    assert mmint.fit.run_fit is run_fit and mmint.benchmark.grid.Suite is Suite
    with pytest.raises(InputError) as a:
        mmint.benchmark("synthetic", models=["multivy"])  # the module, called
    with pytest.raises(InputError) as b:
        benchmark("synthetic", models=["multivy"])  # the function
    assert str(a.value) == str(b.value) and "unknown model 'multivy'" in str(a.value)


def test_keyword_overrides_are_the_command_lines():
    from mmint.api.inputs import to_overrides

    got = to_overrides(
        {"model__max_epochs": 3, "logger": "csv", "data.kinds": {"rna": "counts"}, "x": None}
    )
    assert got == ["model.max_epochs=3", "logger=csv", "data.kinds={rna:counts}", "x=null"]
    assert to_overrides({"+data.n_top_features": {"rna": 40}}) == ["+data.n_top_features={rna:40}"]
    assert ad  # anndata is the API's type for one modality
