"""Bad input that used to pass silently or end in a traceback: each gets a one-line error or
a documented, warned handling; cells without a modality are marked in outputs.h5mu."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

from mmint.cli import compose
from mmint.data import PairedData, PairedDataModule
from mmint.data.simulate import simulate
from mmint.errors import InputError
from mmint.fit import run_fit
from mmint.models import build_model

KINDS = {"rna": "counts", "adt": "counts"}


@pytest.fixture(scope="module")
def pair() -> dict[str, ad.AnnData]:
    """240 cells with rna (60 genes) and adt (12 proteins) counts, 4 labelled types."""
    sim = simulate(
        n_cells=240,
        n_types=4,
        n_major=2,
        n_batches=1,
        modalities={"rna": ("counts", 60), "adt": ("counts", 12)},
        n_links=2,
        seed=0,
    )
    return sim.adatas


def _write(folder, adatas: dict[str, ad.AnnData]) -> list[str]:
    for m, a in adatas.items():
        a.write_h5ad(folder / f"{m}.h5ad")
    paths = ", ".join(f"{m}: {folder / f'{m}.h5ad'}" for m in adatas)
    kinds = ", ".join(f"{m}: {KINDS.get(m, 'counts')}" for m in adatas)
    return ["data=custom", f"data.paths={{{paths}}}", f"data.kinds={{{kinds}}}"]


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    from mmint.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(argv, capsys) -> str:
    code, out, err = _main(["validate", *argv, "model=pca"], capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and " - " in lines[0], err
    return lines[0]


def test_cells_without_counts_are_marked_missing_with_a_warning(pair, tmp_path, capsys):
    rna = pair["rna"].copy()
    rna.X[:20] = 0  # 20 cells without a single count
    args = [*_write(tmp_path, {"rna": rna, "adt": pair["adt"]}), "data.label_key=cell_type"]
    code, out, err = _main(["validate", *args, "model=pca"], capsys)
    assert code == 0, err
    assert "modality rna: kind=counts features=60 cells=220 missing=20" in out
    assert "warning: 20 cells have no counts in 'rna' (e.g. cell0000, cell0001" in out
    # a count model fits it: the empty cells are treated as lacking rna, no NaN anywhere
    cfg = compose(
        "fit",
        [*args, "model=multivi", "model.max_epochs=2", "logger=none", "eval.scib=false"]
        + ["eval.leiden=false", "trainer.num_threads=1"],
    )
    metrics = run_fit(cfg, tmp_path / "run")
    assert metrics["status"] == "ok"
    assert any("20 cells have no counts in 'rna'" in w for w in metrics["warnings"])
    assert np.isfinite(metrics["r2"]["rna"]["adt"]) and np.isfinite(metrics["ari"])
    out = md.read_h5mu(tmp_path / "run/outputs.h5mu")
    assert out.mod["rna"].n_obs == 220 and int(out.obsm["rna"].sum()) == 220


def test_cells_empty_everywhere_are_an_error(pair, tmp_path, capsys):
    rna, adt = pair["rna"].copy(), pair["adt"].copy()
    rna.X[:5], adt.X[:5] = 0, 0
    line = _one_error(_write(tmp_path, {"rna": rna, "adt": adt}), capsys)
    assert "5 cells have no values in any modality, e.g. cell0000" in line
    assert "remove these cells" in line


def test_modalities_sharing_no_cells(pair, tmp_path, capsys):
    adt = pair["adt"].copy()
    adt.obs_names = [f"other{i}" for i in range(adt.n_obs)]
    path = tmp_path / "pair.h5mu"
    md.MuData({"rna": pair["rna"], "adt": adt}).write(path)
    args = ["data=custom", f"data.paths={path}", "data.kinds={rna: counts, adt: counts}"]
    line = _one_error([*args, "data.join=outer"], capsys)
    assert "the modalities share no cells (cells per modality: 'rna': 240, 'adt': 240" in line
    assert str(path) in line and "obs_names" in line
    # the default join (strict) refuses it too, naming how the cells differ
    line = _one_error(args, capsys)
    assert "cells differ between modalities 'rna' and 'adt': 240 only in 'rna'" in line


def test_strict_join_on_a_mudata(pair, tmp_path, capsys):
    path = tmp_path / "pair.h5mu"
    md.MuData({"rna": pair["rna"][:200].copy(), "adt": pair["adt"]}).write(path)
    args = ["data=custom", f"data.paths={path}", "data.kinds={rna: counts, adt: counts}"]
    line = _one_error([*args, "data.join=strict"], capsys)
    assert "cells differ between modalities 'rna' and 'adt': 0 only in 'rna', 40 only in" in line
    code, out, _ = _main(["validate", *args, "data.join=outer", "model=pca"], capsys)
    assert code == 0 and "modality rna: kind=counts features=60 cells=200 missing=40" in out


def test_one_feature_counts_modality(pair, tmp_path, capsys):
    adt = pair["adt"][:, :1].copy()
    args = _write(tmp_path, {"rna": pair["rna"], "adt": adt})
    line = _one_error(args, capsys)
    assert "modality 'adt' has 1 feature: normalising its counts per cell (lognorm)" in line
    assert "data.kinds.adt=continuous" in line
    # with raw counts kept (transform none) MultiVI's width rule gives a 1-unit network
    data = PairedData.from_anndatas({"rna": adt, "adt": pair["adt"]}, KINDS)
    dm = PairedDataModule(data, transforms={"rna": "none", "adt": "clr"})
    dm.setup()
    with pytest.raises(InputError, match="hidden width resolves to 1") as info:
        build_model("multivi", dm.spec)
    assert info.value.where == "model.n_hidden"
    assert build_model("multivi", dm.spec, n_hidden=16) is not None


@pytest.mark.parametrize("model", ["pca", "cvqvae"])
def test_missing_modality_is_marked_in_outputs(pair, tmp_path, model):
    """30% of cells without adt: mod['adt'] holds only the cells that have it, MuData's mask
    obsm['adt'] is False for the others, and no adt latent is given for them."""
    adt = pair["adt"][72:].copy()
    args = _write(tmp_path, {"rna": pair["rna"], "adt": adt})
    cfg = compose(
        "fit",
        [*args, f"model={model}", "data.join=outer", "data.label_key=cell_type"]
        + ["model.max_epochs=2", "logger=none", "eval.scib=false", "eval.leiden=false"],
    )
    metrics = run_fit(cfg, tmp_path / "run")
    assert metrics["status"] == "ok"
    out = md.read_h5mu(tmp_path / "run/outputs.h5mu")
    has_adt = pd.Index(out.obs_names).isin(adt.obs_names)
    assert has_adt.sum() == 168 and out.n_obs == 240
    np.testing.assert_array_equal(np.asarray(out.obsm["adt"], bool).ravel(), has_adt)
    assert np.asarray(out.obsm["rna"], bool).all()
    assert sorted(out.mod["adt"].obs_names) == sorted(adt.obs_names)
    x = out.mod["adt"].X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    assert (x != 0).any(axis=1).all()  # measured inputs only: no all-zero stand-in rows
    assert f"X_{model}_adt" in out.mod["adt"].obsm
    assert f"X_{model}_adt" not in out.mod["rna"].obsm  # 72 of its cells have no adt latent
    assert out.mod["rna"].obsm[f"X_{model}_rna"].shape[0] == 240
    assert out.obsm[f"X_{model}"].shape[0] == 240
    assert np.isfinite(out.obsm[f"X_{model}"]).all()
