"""``mmint.benchmark`` on in-memory data and the ``mmint.pl`` figures, checked against the
suite's own files (``results.csv``, ``leaderboard.csv``, ``curves.csv``, ``outputs.h5mu``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mmint
from mmint.benchmark.results import read_results
from mmint.errors import InputError

KINDS = {"rna": "counts", "atac": "binary", "ephys": "continuous"}
TINY = {
    "logger": "none",
    "model__max_epochs": 2,
    "eval__scib": False,
    "eval__leiden": False,
    "eval__every_n_epochs": 1,
    "trainer__num_threads": 1,
    "data__kinds": KINDS,
    "data__label_key": "cell_type",
    "data__batch_key": "batch",
}


@pytest.fixture(scope="module")
def suite(tiny_sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    table = mmint.benchmark(tiny_sim.adatas, models=["multivi"], seeds=[0], out=out, **TINY)
    return out, table


def test_benchmark_returns_results_csv(suite):
    out, table = suite
    pd.testing.assert_frame_equal(table, read_results(out / "results.csv"))
    assert sorted(table["model"]) == ["multivi", "pca"]  # the floor is added
    assert (table["status"] == "ok").all()
    assert table.attrs["suite_dir"] == str(out)
    for row in table.itertuples():  # each row is its run's metrics.json
        metrics = json.loads((out / row.run_dir / "metrics.json").read_text())
        assert (metrics["model"], metrics["seed"]) == (row.model, row.seed)
        assert metrics["ari"] == pytest.approx(row.ari, rel=1e-12)
        assert metrics["r2"]["rna"]["atac"] == pytest.approx(
            table.loc[row.Index, "r2.rna.atac"], rel=1e-12
        )


def test_benchmark_resumes(suite, tiny_sim, capsys):
    out, table = suite
    again = mmint.benchmark(tiny_sim.adatas, models=["multivi"], seeds=[0], out=out, **TINY)
    assert "done earlier" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again, table)


def test_benchmark_bad_model(tiny_sim, tmp_path):
    with pytest.raises(InputError, match="unknown model 'multivy'"):
        mmint.benchmark(tiny_sim.adatas, models=["multivy"], out=tmp_path, **TINY)
    assert not (tmp_path / "results.csv").exists()


def test_leaderboard_figure_shows_leaderboard_csv(suite):
    out, table = suite
    fig = mmint.pl.leaderboard(table)
    board = pd.read_csv(out / "leaderboard.csv", index_col=0)
    shown = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    expected = board[[*[c for c in board if c.startswith("score.")], "mean"]].to_numpy(float)
    np.testing.assert_allclose(shown, expected, equal_nan=True)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(board.index)


def test_umap_one_panel_per_run_and_colour(suite):
    out, table = suite
    runs = [mmint.load_run(out / d) for d in table["run_dir"]]
    fig = mmint.pl.umap(runs, color=["cell_type", "split"])
    titles = sorted(ax.get_title() for ax in fig.axes if ax.get_title())
    assert titles == sorted(f"{r.model}: {c}" for r in runs for c in ("cell_type", "split"))
    with pytest.raises(InputError, match="no column 'nope'"):
        mmint.pl.umap(runs[0], color="nope")


def test_curves_plot_curves_csv(suite):
    out, table = suite
    run = mmint.load_run(out / table.loc[table["model"] == "multivi", "run_dir"].iloc[0])
    fig = mmint.pl.curves(run, columns=["latent_distance"])
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), run.curves["latent_distance"])
    pca = mmint.load_run(out / table.loc[table["model"] == "pca", "run_dir"].iloc[0])
    with pytest.raises(InputError, match=r"no curves\.csv"):
        mmint.pl.curves(pca)
