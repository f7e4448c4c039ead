"""``mmint predict``: a fitted run applied to new cells gives exactly the latents and
predictions the run gave those cells; different modalities or features are one error line."""

from __future__ import annotations

import json

import anndata as ad
import mudata as md
import numpy as np
import pytest

from mmint.cli import compose
from mmint.errors import InputError
from mmint.fit import run_fit
from mmint.predict import predict_run

KINDS = {"rna": "counts", "atac": "binary", "ephys": "continuous"}
FIT = ["logger=none", "eval.scib=false", "eval.leiden=false", "trainer.num_threads=1"]
N_TOP_RNA = 40


def _data_args(folder, modalities=tuple(KINDS)) -> list[str]:
    paths = ", ".join(f"{m}: {folder / f'{m}.h5ad'}" for m in modalities)
    kinds = ", ".join(f"{m}: {KINDS[m]}" for m in modalities)
    return ["data=custom", f"data.paths={{{paths}}}", f"data.kinds={{{kinds}}}"] + [
        "data.label_key=cell_type",
        "data.batch_key=batch",
    ]


def _data_cfg(folder, modalities=tuple(KINDS)) -> dict:
    return {
        "name": "new",
        "source": "custom",
        "paths": {m: str(folder / f"{m}.h5ad") for m in modalities},
        "kinds": {m: KINDS[m] for m in modalities},
        "label_key": "cell_type",
        "batch_key": "batch",
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_sim):
    folder = tmp_path_factory.mktemp("data")
    for m, a in tiny_sim.adatas.items():
        a.write_h5ad(folder / f"{m}.h5ad")
    return folder


@pytest.fixture(scope="module", params=["pca", "multivi"])
def run_dir(request, files, tmp_path_factory):
    """A tiny run on the files, with the 40 most variable genes selected on training cells."""
    run = tmp_path_factory.mktemp(f"run_{request.param}")
    extra = ["model.max_epochs=2"] if request.param != "pca" else []
    args = [*_data_args(files), f"+data.n_top_features={{rna: {N_TOP_RNA}}}"]
    cfg = compose("fit", [f"model={request.param}", *args, *FIT, *extra])
    assert run_fit(cfg, run)["status"] == "ok"
    return run


def _new_cells(run_dir, files, folder, drop_selected: int = 0, modalities=tuple(KINDS)):
    """The run's test cells of its second batch, in other files: genes shuffled, 5 genes the
    run does not use dropped, 2 unknown genes added, ephys features reversed."""
    test = json.loads((run_dir / "split.json").read_text())["test"]
    used = md.read_h5mu(run_dir / "outputs.h5mu").mod["rna"].var_names
    folder.mkdir(exist_ok=True)
    for m in modalities:
        a = ad.read_h5ad(files / f"{m}.h5ad")
        a = a[[c for c in test if a.obs.loc[c, "batch"] == "b1"]].copy()
        if m == "rna":
            unused = [g for g in a.var_names if g not in set(used)][:5]
            drop = [*unused, *list(used[:drop_selected])]
            a = a[:, [g for g in a.var_names if g not in drop]].copy()
            a = a[:, np.random.default_rng(0).permutation(a.n_vars)].copy()
            more = ad.AnnData(np.ones((a.n_obs, 2), np.float32), obs=a.obs[[]])
            more.var_names = ["extra_0", "extra_1"]
            a = ad.concat([a, more], axis=1, merge="first")
        if m == "ephys":
            a = a[:, a.var_names[::-1]].copy()
        a.write_h5ad(folder / f"{m}.h5ad")
    return folder


def test_predicted_latents_and_translations_equal_the_runs_own(run_dir, files, tmp_path):
    new = _new_cells(run_dir, files, tmp_path / "new")
    summary = predict_run(run_dir, _data_cfg(new), tmp_path / "out")
    name = summary["model"]
    assert summary["features_left_out"] == {"rna": 100 - 5 + 2 - N_TOP_RNA, "atac": 0, "ephys": 0}
    got = md.read_h5mu(tmp_path / "out" / "outputs.h5mu")
    own = md.read_h5mu(run_dir / "outputs.h5mu")
    cells = list(got.obs_names)
    assert len(cells) == summary["n_cells"] > 5
    assert set(got.obs["batch"]) == {"b1"}  # a naive code would be 0: b0's
    pos = own.obs_names.get_indexer(cells)
    np.testing.assert_allclose(got.obsm[f"X_{name}"], own.obsm[f"X_{name}"][pos], atol=1e-5)
    for m in KINDS:
        a, b = got.mod[m], own.mod[m][cells]
        assert list(a.var_names) == list(b.var_names)  # the run's features, in its order
        np.testing.assert_allclose(_dense(a.X), _dense(b.X), atol=1e-5)  # model inputs
        np.testing.assert_allclose(a.obsm[f"X_{name}_{m}"], b.obsm[f"X_{name}_{m}"], atol=1e-5)
    for pair in ("rna_to_atac", "ephys_to_rna"):
        mine = ad.read_h5ad(tmp_path / "out" / "predictions" / f"{pair}.h5ad")
        theirs = ad.read_h5ad(run_dir / "predictions" / f"{pair}.h5ad")[list(mine.obs_names)]
        assert mine.n_obs == len(cells)
        np.testing.assert_allclose(mine.X, theirs.X, atol=1e-5)
    written = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert written["run"] == str(run_dir) and "predictions/rna_to_atac.h5ad" in written["files"]


def _dense(x):
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def test_missing_features_or_modalities_are_named(run_dir, files, tmp_path):
    used = md.read_h5mu(run_dir / "outputs.h5mu").mod["rna"].var_names
    new = _new_cells(run_dir, files, tmp_path / "new", drop_selected=3)
    with pytest.raises(InputError, match=f"modality 'rna' lacks 3 of the run's {N_TOP_RNA}") as e:
        predict_run(run_dir, _data_cfg(new), tmp_path / "out")
    assert all(g in str(e.value) for g in used[:3])
    two = _new_cells(run_dir, files, tmp_path / "two", modalities=("rna", "atac"))
    with pytest.raises(InputError, match="modalities differ from the run's.*lacks ephys"):
        predict_run(run_dir, _data_cfg(two, ("rna", "atac")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_batches_are_refused(run_dir, files, tmp_path):
    """The run was trained on batches b0 and b1: a new batch has no code in its model."""
    new = _new_cells(run_dir, files, tmp_path / "new")
    for path in new.glob("*.h5ad"):  # every file: the batch column must agree between them
        a = ad.read_h5ad(path)
        a.obs["batch"] = "b7"
        a.write_h5ad(path)
    with pytest.raises(
        InputError, match=r"batches b7 of the new cells are not among the run's \(b0, b1\)"
    ):
        predict_run(run_dir, _data_cfg(new), tmp_path / "out")
    without = {**_data_cfg(new), "batch_key": None}
    with pytest.raises(InputError, match="the run was trained on 2 batches"):
        predict_run(run_dir, without, tmp_path / "out")


def _main(argv, capsys) -> tuple[int, str, str]:
    from mmint.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("run_dir", ["pca"], indirect=True)  # the same for every model
def test_command_line(run_dir, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    new = _new_cells(run_dir, files, tmp_path / "new")
    code, out, err = _main(["predict", f"run={run_dir}", *_data_args(new)], capsys)
    assert code == 0, err
    assert (run_dir / "predict" / "custom" / "outputs.h5mu").exists()
    assert "written to:" in out and "left out: {'rna': 57}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]  # no Hydra folder

    bad = _new_cells(run_dir, files, tmp_path / "bad", drop_selected=2)
    code, out, err = _main(["predict", f"run={run_dir}", *_data_args(bad)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: modality 'rna' lacks 2 of the run's 40 features: ")
    code, _, err = _main(["predict", f"run={run_dir}"], capsys)
    assert code == 2 and err.startswith("error: no data given (mmint predict)")
