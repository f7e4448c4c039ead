"""End to end: a tiny suite writes the leaderboard (controls, CD diagram, detectable
difference from the runs' own cells), and ``mmint report`` rebuilds it from results.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmint.benchmark.cli import run_benchmark
from mmint.benchmark.detectable import ari_codes, run_groups
from mmint.cli import compose_run, main
from mmint.io import read_json

from .conftest import _formatted, tiny_suite


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("board") / "suite"
    suite = tiny_suite(
        models=["pca"],
        floor=[],
        seeds=[0, 1],
        variants={f"k{k}": {"model.n_components": k} for k in (2, 5, 10)},
    )
    run_benchmark(
        suite, folder, ["logger=csv"], logger_kind="csv", echo=lambda _: None, compose=compose_run
    )
    return folder


def test_report_opens_with_the_leaderboard(suite_dir):
    report = (suite_dir / "report.md").read_text()
    assert report.index("## Leaderboard") < report.index("## Summary")
    # every variant has ARI 1 on the tiny data: no grouping diagram (all tie), prediction's
    assert "grouping: Significance of the grouping score: not tested (the models tie" in report
    assert not (suite_dir / "plots" / "cd_grouping.png").exists()
    for png in ("leaderboard.png", "cd_overall.png", "cd_prediction.png"):
        assert f"(plots/{png})" in report and (suite_dir / "plots" / png).exists()
    assert "Friedman's test of the overall score over 2 (dataset, seed) blocks and 3 models" in (
        report
    )
    board = pd.read_csv(suite_dir / "leaderboard.csv", index_col=0)
    assert sorted(board.index) == ["pca/k10", "pca/k2", "pca/k5"]
    assert board["n_tasks"].tolist() == [1, 1, 1]
    scaled = pd.read_csv(suite_dir / "scaled.csv")
    assert {"ari", "scaled.ari", "category.grouping", "overall"} <= set(scaled.columns)
    assert sorted(p.name for p in (suite_dir / "controls").iterdir()) == [
        "synthetic__seed0.json",
        "synthetic__seed1.json",
    ]
    # every run kept its folder: the detectable difference reads the runs' own cells
    assert "| per-cell" in report.split("### Can the test sets separate the models?")[1]


def test_per_cell_groups_reproduce_the_recorded_ari(suite_dir):
    table = pd.read_csv(suite_dir / "results.csv")
    for _, r in table.iterrows():
        labels = np.asarray(
            read_json(suite_dir / "controls" / f"synthetic__seed{r['seed']}.json")["test_labels"]
        )
        groups = run_groups(suite_dir / r["run_dir"], "pca", int(r["seed"]), labels)
        lab = labels[labels >= 0]
        assert ari_codes(np.unique(lab, return_inverse=True)[1], groups) == pytest.approx(
            r["ari"], abs=1e-12
        )


def test_mmint_report_rebuilds_it_without_recomputing(suite_dir, tmp_path, capsys):
    stamps = {p.name: p.stat().st_mtime_ns for p in (suite_dir / "controls").iterdir()}
    overrides = [f"++{k}={v}" for k, v in _formatted().items()]
    main(["report", str(suite_dir / "results.csv"), f"out={tmp_path / 'r'}", *overrides])
    assert "report:" in capsys.readouterr().out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (suite_dir / "controls").iterdir()}
    ours = pd.read_csv(tmp_path / "r" / "leaderboard.csv", index_col=0)
    theirs = pd.read_csv(suite_dir / "leaderboard.csv", index_col=0)
    pd.testing.assert_frame_equal(ours, theirs)
    report = (tmp_path / "r" / "report.md").read_text()
    assert report.startswith("# Benchmark `suite`") and "## Leaderboard" in report


def test_mmint_report_of_a_suite_folder(suite_dir, tmp_path):
    """A suite folder in place of its results.csv: the same leaderboard, from its runs."""
    overrides = [f"++{k}={v}" for k, v in _formatted().items()]
    main(["report", str(suite_dir), f"out={tmp_path / 'f'}", *overrides])
    ours = pd.read_csv(tmp_path / "f" / "leaderboard.csv", index_col=0)
    theirs = pd.read_csv(suite_dir / "leaderboard.csv", index_col=0)
    pd.testing.assert_frame_equal(ours, theirs)


def test_report_command_errors(tmp_path, capsys):
    for args, what in [
        ([], "no results file given"),
        ([str(tmp_path / "none.csv"), "out=x"], "no such results file"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["report", *args])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and what in err and "\n" not in err
    (tmp_path / "r.csv").write_text("model,data,seed,variant,status\n")
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "r.csv")])
    assert exit_.value.code == 2 and "add out=<dir>" in capsys.readouterr().err


def test_supervised_marks():
    from mmint.benchmark.board import supervised_models

    runs = pd.DataFrame(
        {
            "model": ["knn_transfer", "pca", "unitednet", "unitednet", "gone"],
            "transfer_protocol": [
                None,
                "15-NN on the joint latent",
                "model classifier",
                None,
                None,
            ],
        }
    )
    # knn_transfer by class; unitednet by its run's record; an unknown name is not marked
    assert supervised_models(runs) == {"knn_transfer", "unitednet"}
