"""``mmint validate`` as a user runs it: a subprocess of the installed ``mmint`` script.

Bad input must exit 2 with exactly one stderr line ``error: <what> (<where>) - <fix>`` and no
traceback; good input exits 0 with a summary; ``validate`` writes nothing. All the command
lines run once per module, two at a time, because each one starts a fresh Python.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmint.data import dataset_names
from mmint.data.splits import make_split
from mmint.errors import InputError

MMINT = str(Path(sys.executable).with_name("mmint"))
CONFIGS = Path(__file__).resolve().parents[1] / "mmint" / "conf"
N = 120  # a random split leaves 12 test cells: above split.min_test_cells (10)
# validate needs a model config to compose; the contracts' default (unitednet) may not exist yet
MODEL = "model=pca"


@dataclass
class Run:
    args: list[str]
    cwd: Path
    returncode: int = -1
    stdout: str = ""
    stderr: str = ""

    @property
    def error(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[0] if lines else ""


def _names(start: int, stop: int) -> list[str]:
    return [f"cell{i:03d}" for i in range(start, stop)]


def _adata(names, n_features, seed, sparse=False, prefix="f") -> ad.AnnData:
    rng = np.random.default_rng(seed)
    x = rng.poisson(2.0, (len(names), n_features)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "cell_type": [f"T{i % 3}" for i in range(len(names))],
            "batch": [f"b{i % 2}" for i in range(len(names))],
        },
        index=pd.Index(names),
    )
    var = pd.DataFrame(index=[f"{prefix}{j}" for j in range(n_features)])
    return ad.AnnData(sp.csr_matrix(x) if sparse else x, obs=obs, var=var)


def _write_files(folder: Path) -> None:
    import mudata as md

    names = _names(0, N)
    rna = _adata(names, 8, 1, sparse=True, prefix="g")
    adt = _adata(names, 4, 2, prefix="p")
    rna.write_h5ad(folder / "rna.h5ad")
    adt.write_h5ad(folder / "adt.h5ad")
    _adata(_names(2, N + 2), 4, 2, prefix="p").write_h5ad(folder / "adt_shifted.h5ad")
    dup = _adata(names, 4, 2, prefix="p")
    dup.obs_names = names[:-1] + [names[0]]
    dup.write_h5ad(folder / "adt_dup.h5ad")
    for name, rows, value in (
        ("nan", [3, 7], np.nan),
        ("neg", [5], -2.0),
        ("frac", [1, 2, 9], 0.5),
    ):
        bad = adt.copy()
        x = bad.X.copy()
        if name == "frac":
            x[rows, 0] += value
        else:
            x[rows, 1] = value
        bad.X = x
        bad.write_h5ad(folder / f"adt_{name}.h5ad")
    ad.AnnData(np.zeros((N, 0), np.float32), obs=adt.obs).write_h5ad(folder / "adt_empty.h5ad")
    twelve = _names(0, 12)
    _adata(twelve, 8, 3, prefix="g").write_h5ad(folder / "rna_twelve.h5ad")
    _adata(twelve, 4, 4, prefix="p").write_h5ad(folder / "adt_twelve.h5ad")
    dup_genes = _adata(names, 8, 1, prefix="g")
    dup_genes.var_names = [f"g{j % 2}" for j in range(8)]
    dup_genes.write_h5ad(folder / "rna_dup_genes.h5ad")
    other_labels = _adata(names, 4, 2, prefix="p")
    other_labels.obs["cell_type"] = [f"T{(i + 1) % 3}" for i in range(len(names))]
    other_labels.write_h5ad(folder / "adt_other_labels.h5ad")
    five = _names(0, 5)
    _adata(five, 8, 3, prefix="g").write_h5ad(folder / "rna_five.h5ad")
    _adata(five, 4, 4, prefix="p").write_h5ad(folder / "adt_five.h5ad")
    mu_rna = _adata(_names(0, N - 2), 8, 1, sparse=True, prefix="g")
    md.MuData({"rna": mu_rna, "adt": _adata(names, 4, 2, prefix="p")}).write(folder / "pair.h5mu")
    nan = _adata(names, 4, 2, prefix="p")
    nan.X[[4, 6], 0] = np.nan
    md.MuData({"rna": rna, "adt": nan}).write(folder / "pair_nan.h5mu")


def _empty_fold() -> int:
    """A fold of k=10 that leaves a set empty for the 5-cell files (unlabelled, one batch)."""
    for fold in range(10):
        try:
            make_split(np.full(5, -1), np.zeros(5, int), ["all"], kind="kfold", k=10, fold=fold)
        except InputError:
            return fold
    raise AssertionError("every fold of 5 cells in 10 folds is usable?")


def _paths(folder: Path | None, rna="rna.h5ad", adt="adt.h5ad") -> list[str]:
    def p(name: str) -> str:
        return f'"{folder / name}"' if folder else name

    return [
        "data=custom",
        f"data.paths={{rna: {p(rna)}, adt: {p(adt)}}}",
        "data.kinds={rna: counts, adt: counts}",
        MODEL,
    ]


def _cases(data: Path, empty: dict[str, Path]) -> dict[str, Run]:
    labelled = ["data.label_key=cell_type", "data.batch_key=batch"]
    cases = {
        # good input
        "good": Run([*_paths(data), *labelled], empty["good"]),
        "good_relative": Run([*_paths(None), *labelled], data),
        "h5mu_relative": Run(
            [
                "data=custom",
                "data.paths=pair.h5mu",
                "data.kinds={rna: counts, adt: counts}",
                MODEL,
                *labelled,
            ],
            data,
        ),
        "inner": Run([*_paths(data, adt="adt_shifted.h5ad"), "data.join=inner"], empty["inner"]),
        "outer": Run([*_paths(data, adt="adt_shifted.h5ad"), "data.join=outer"], empty["outer"]),
        # bad input
        "cells_differ": Run(_paths(data, adt="adt_shifted.h5ad"), empty["bad"]),
        "duplicates": Run(_paths(data, adt="adt_dup.h5ad"), empty["bad"]),
        "nan": Run(_paths(data, adt="adt_nan.h5ad"), empty["bad"]),
        "negative": Run(_paths(data, adt="adt_neg.h5ad"), empty["bad"]),
        "non_integer": Run(_paths(data, adt="adt_frac.h5ad"), empty["bad"]),
        "no_features": Run(_paths(data, adt="adt_empty.h5ad"), empty["bad"]),
        "missing_label": Run([*_paths(data), "data.label_key=celltype"], empty["bad"]),
        "missing_batch": Run([*_paths(data), "data.batch_key=sample"], empty["bad"]),
        "holdout_all": Run(
            [*_paths(data), *labelled, "split.kind=holdout_batch", "split.holdout=[b0,b1]"],
            empty["bad"],
        ),
        "kfold_few": Run(
            [
                *_paths(data, rna="rna_five.h5ad", adt="adt_five.h5ad"),
                "split.kind=kfold",
                "split.k=10",
                f"split.fold={_empty_fold()}",
            ],
            empty["bad"],
        ),
        "too_small": Run(
            [*_paths(data, rna="rna_twelve.h5ad", adt="adt_twelve.h5ad"), *labelled], empty["bad"]
        ),
        "duplicate_features": Run(_paths(data, rna="rna_dup_genes.h5ad"), empty["bad"]),
        "labels_disagree": Run(
            [*_paths(data, adt="adt_other_labels.h5ad"), *labelled], empty["bad"]
        ),
        "unknown_dataset": Run(["data=x", MODEL], empty["bad"]),
        "missing_file": Run(_paths(data, adt="nope.h5ad"), empty["bad"]),
        "h5mu_nan": Run(
            [
                "data=custom",
                "data.paths=pair_nan.h5mu",
                "data.kinds={rna: counts, adt: counts}",
                MODEL,
            ],
            data,
        ),
        "h5mu_outer": Run(
            ["data=custom", "data.paths=pair.h5mu", "data.kinds={rna: counts, adt: counts}", MODEL]
            + ["data.join=outer", "data.label_key=cell_type"],
            data,
        ),
    }
    if (CONFIGS / "model" / "unitednet.yaml").exists():
        cases["default_model"] = Run([a for a in _paths(data) if a != MODEL], empty["good"])
    return cases


def _run(run: Run) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in ("MMINT_DATA_DIR", "HYDRA_FULL_ERROR")}
    env.update(WANDB_MODE="disabled")
    proc = subprocess.run(
        [MMINT, "validate", *run.args],
        cwd=run.cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    run.returncode, run.stdout, run.stderr = proc.returncode, proc.stdout, proc.stderr
    return run


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, object]:
    data = tmp_path_factory.mktemp("cli_data")
    _write_files(data)
    empty = {k: tmp_path_factory.mktemp(f"cwd_{k}") for k in ("good", "inner", "outer", "bad")}
    before = _listing(data)
    cases = _cases(data, empty)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_run, cases.values()))
    return {"runs": cases, "data": data, "empty": empty, "before": before}


def _ok(run: Run) -> str:
    assert run.returncode == 0, f"{run.args}\nstdout: {run.stdout}\nstderr: {run.stderr}"
    assert "Traceback" not in run.stderr
    return run.stdout


# ---------------------------------------------------------------------- good input
def test_good_custom_data(cli):
    out = _ok(cli["runs"]["good"])
    assert "dataset: custom" in out
    assert f"cells: {N}" in out
    assert f"modality rna: kind=counts features=8 cells={N} missing=0 sparsity=" in out
    assert f"modality adt: kind=counts features=4 cells={N} missing=0 sparsity=" in out
    assert "labels (cell_type): 3 categories, 0 cells without a label (unknown), 0 excluded" in out
    assert "batches (batch): 2" in out
    sizes = re.search(r"split \(random\): train=(\d+), val=(\d+), test=(\d+)", out)
    assert sizes, out
    train, val, test = map(int, sizes.groups())
    assert train + val + test == N and abs(train - 96) <= 2 and val >= 10 and test >= 10


def test_validate_writes_nothing(cli):
    for name in ("good", "inner", "outer", "bad"):
        assert _listing(cli["empty"][name]) == [], name
    assert _listing(cli["data"]) == cli["before"]


def test_relative_paths_resolve_against_launch_dir(cli):
    out = _ok(cli["runs"]["good_relative"])
    assert f"cells: {N}" in out and "modality adt: kind=counts features=4" in out
    assert "labels (cell_type): 3 categories" in out


def test_h5mu(cli):
    out = _ok(cli["runs"]["h5mu_outer"])
    assert f"cells: {N}" in out
    assert f"modality rna: kind=counts features=8 cells={N - 2} missing=2" in out
    assert f"modality adt: kind=counts features=4 cells={N} missing=0" in out
    assert "labels (cell_type): 3 categories" in out


def test_h5mu_default_join_is_strict(cli):
    """data.join=strict (the default) holds for a MuData: cells missing from a modality are
    refused, with the joins that keep them as the fix (the relative path was found)."""
    run = cli["runs"]["h5mu_relative"]
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.error.startswith("error: cells differ between modalities 'rna' and 'adt'")
    assert "pair.h5mu" in run.error and "data.join=outer" in run.error


def test_inner_join_reports_dropped(cli):
    out = _ok(cli["runs"]["inner"])
    assert f"cells: {N - 2}" in out
    assert f"join=inner: kept {N - 2} shared cells, dropped 4" in out


def test_outer_join_reports_missing(cli):
    out = _ok(cli["runs"]["outer"])
    assert f"cells: {N + 2}" in out
    assert f"modality rna: kind=counts features=8 cells={N} missing=2" in out
    assert f"modality adt: kind=counts features=4 cells={N} missing=2" in out
    assert "join=outer: missing-modality counts {'rna': 2, 'adt': 2}" in out


def test_default_model(cli):
    if "default_model" not in cli["runs"]:
        pytest.skip("mmint/conf/model/unitednet.yaml (the default model) is not there yet")
    assert f"cells: {N}" in _ok(cli["runs"]["default_model"])


# ---------------------------------------------------------------------- bad input
BAD = {
    "cells_differ": (
        "cells differ between modalities 'rna' and 'adt': 2 only in 'rna', 2 only in 'adt', e.g. cell000",
        "adt_shifted.h5ad",
        "data.join=inner",
    ),
    "duplicates": (
        "1 duplicate cell names in modality 'adt', e.g. cell000",
        "adt_dup.h5ad",
        "obs_names_make_unique",
    ),
    "nan": ("2 cells have NaN or inf values, e.g. cell003, cell007", "modality 'adt'", "impute"),
    "negative": (
        "1 cells have negative values in a 'counts' modality, e.g. cell005",
        "adt_neg.h5ad",
        "continuous",
    ),
    "non_integer": (
        "3 cells have non-integer values in a 'counts' modality",
        "adt_frac.h5ad",
        "integer counts",
    ),
    "no_features": (
        f"modality 'adt' is empty ({N} cells x 0 features)",
        "adt_empty.h5ad",
        "at least one",
    ),
    "missing_label": ("label column 'celltype' is missing", "cell_type", "data.label_key"),
    "missing_batch": ("batch column 'sample' is missing", "rna.h5ad", "data.batch_key"),
    "holdout_all": ("split 'holdout_batch' leaves the train set empty", "split", "holdout batches"),
    "kfold_few": ("split 'kfold' leaves the", "split", "more cells"),
    "too_small": (
        "the split leaves 1 test cells (train 9, val 2, test 1); at least 10 are needed",
        "split",
        "use more cells",
    ),
    "duplicate_features": (
        "8 of 8 features of modality 'rna' share 2 names, e.g. g0, g1",
        "rna_dup_genes.h5ad",
        "var_names_make_unique",
    ),
    "labels_disagree": (
        f"the label column 'cell_type' disagrees between modalities 'rna' and 'adt' for {N} of "
        f"{N} shared cells, e.g. cell000: 'T0' vs 'T1'",
        "adt_other_labels.h5ad",
        "obs['cell_type']",
    ),
    "unknown_dataset": ("unknown dataset 'x'", "", "or data=custom"),
    "missing_file": ("file not found", "nope.h5ad", "modality 'adt'"),
    "h5mu_nan": (
        "2 cells have NaN or inf values, e.g. cell004, cell006",
        "modality 'adt', ",
        "impute",
    ),
}
ONE_LINE = list(BAD)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_a_clear_error(cli, case):
    run = cli["runs"][case]
    what, where, fix = BAD[case]
    assert run.returncode == 2, f"{run.args}\nstdout: {run.stdout}\nstderr: {run.stderr}"
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    assert " - " in line  # error: <what> (<where>) - <how to fix>
    if where:  # the contracts' unknown-dataset line has no (<where>) part
        assert "(" in line
    assert what in line, line
    assert where in line, line
    assert fix in line, line


@pytest.mark.parametrize("case", ONE_LINE)
def test_bad_input_stderr_is_one_line(cli, case):
    run = cli["runs"][case]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr


def test_unknown_dataset_lists_names(cli):
    line = cli["runs"]["unknown_dataset"].error
    known = [n for n in dataset_names() if n != "custom"]
    assert f"use one of: {', '.join(known)}, or data=custom" in line


def test_unknown_dataset_contract_wording(cli):
    known = [n for n in dataset_names() if n != "custom"]
    expected = f"error: unknown dataset 'x' - use one of: {', '.join(known)}, or data=custom"
    assert cli["runs"]["unknown_dataset"].stderr.strip() == expected


# ---------------------------------------------------------------------- in-process (fast)
def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    from mmint.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "what", "where", "fix"),
    [
        (["data=custom"], "no files given for data=custom", "data.paths", "data.paths="),
        (
            ["data=custom", "data.paths={rna: rna.h5ad}"],
            "no modality kinds given for data=custom",
            "data.kinds",
            "data.kinds=",
        ),
        (
            ["data=custom", "data.paths=rna.h5ad", "data.kinds={rna: counts}"],
            "a single path must be a MuData .h5mu file",
            "data.paths",
            "{modality: file.h5ad}",
        ),
        (
            [*_paths(None)[:2], "data.kinds={rna: counts, adt: umi}"],
            "unknown modality kind 'umi'",
            "data.kinds.adt",
            "counts",
        ),
        (
            [*_paths(None), "data.transforms={adt: zscore}"],
            "unknown transform 'zscore'",
            "data.transforms.adt",
            "clr",
        ),
        (
            _paths(None, adt="nope.h5ad"),
            "file not found",
            "{cwd}/nope.h5ad",  # relative to the launch directory
            "modality 'adt'",
        ),
    ],
)
def test_more_bad_input_in_process(tmp_path, monkeypatch, capsys, args, what, where, fix):
    names = _names(0, 12)
    _adata(names, 8, 1, prefix="g").write_h5ad(tmp_path / "rna.h5ad")
    _adata(names, 4, 2, prefix="p").write_h5ad(tmp_path / "adt.h5ad")
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(["validate", *args, MODEL], capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert what in lines[0] and where.format(cwd=tmp_path) in lines[0] and fix in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adt.h5ad", "rna.h5ad"]


def test_unknown_command(capsys):
    code, _, err = _main(["check", "data=synthetic"], capsys)
    assert code == 2
    assert (
        err.strip()
        == "error: unknown command 'check' (mmint check) - use one of: validate, fit, benchmark, "
        "explain, predict, report"
    )


def test_validate_prints_the_split_sizes(capsys):
    """`mmint validate` shows the train/val/test sizes the fit would use (80/10/10 of 300)."""
    import re

    from mmint.cli import main

    main(["validate", "model=pca", "data.simulate.n_cells=300"])
    out = capsys.readouterr().out
    sizes = re.search(r"^split \(random\): train=(\d+), val=(\d+), test=(\d+)$", out, re.M)
    assert sizes, out
    train, val, test = map(int, sizes.groups())
    assert train + val + test == 300
    assert abs(train - 240) <= 3 and abs(val - 30) <= 3 and abs(test - 30) <= 3
