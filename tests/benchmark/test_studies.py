"""Study suites: generated rows (the simulator at given sizes) and the scale, speed and parity
sections of the report; the real suite YAMLs composed with tiny overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats

from mmint.benchmark.cli import run_benchmark
from mmint.benchmark.grid import Suite, expand
from mmint.benchmark.studies import (
    check_sections,
    growth_exponent,
    parity_section,
    speed_section,
)
from mmint.cli import compose_run, main
from mmint.config import config_dir
from mmint.errors import InputError


def suite_node(name: str) -> dict:
    """The ``suite`` node of ``mmint/conf/suite/<name>.yaml``."""
    return OmegaConf.to_container(
        OmegaConf.load(Path(config_dir()) / "suite" / f"{name}.yaml").suite
    )


def test_growth_exponent_is_the_log_log_least_squares_slope():
    rng = np.random.default_rng(0)
    cells = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
    values = 0.002 * cells**1.3 * np.exp(rng.normal(0, 0.1, len(cells)))
    slope, _ = np.polyfit(np.log(cells), np.log(values), 1)
    assert growth_exponent(cells, values) == pytest.approx(slope, rel=1e-12)
    assert np.isnan(growth_exponent([10, 10], [1.0, 2.0]))  # one size: no slope
    assert np.isnan(growth_exponent([10, 20], [1.0, 0.0]))


def test_generated_rows_compose_the_simulator_at_each_size():
    node = suite_node("scale")
    suite = Suite.from_config(node)
    assert suite.isolate and suite.threads == 1 and "scale" in suite.sections
    assert suite.datasets[:3] == [
        "multiome_10000cells",
        "multiome_30000cells",
        "multiome_100000cells",
    ]
    assert suite.datasets[3:] == ["cite_100000cells", "cite_300000cells", "cite_1000000cells"]
    run = next(r for r in expand(suite) if r.data == "cite_300000cells" and r.model == "pca")
    cfg = compose_run(run.overrides)
    d = cfg["data"]
    assert d["name"] == "cite_300000cells" and d["source"] == "simulator"
    assert d["kinds"] == {"rna": "counts", "adt": "counts"} and d["transforms"] == {"adt": "clr"}
    assert d["simulate"]["n_cells"] == 300000
    assert d["simulate"]["n_features"] == {"rna": 2000, "adt": 200}
    multi = compose_run(expand(suite)[0].overrides)["data"]
    assert multi["simulate"]["sparsity"] == 0.97 and multi["kinds"] == {
        "rna": "counts",
        "atac": "binary",
    }


def test_bad_generated_entry_and_sections():
    node = {"name": "x", "models": ["pca"], "seeds": [0]}
    with pytest.raises(InputError, match="generate: <simulator dataset>"):
        Suite.from_config(
            {**node, "datasets": [{"generate": "snareseq_mouse_cortex_chen2019", "cells": 5}]}
        )
    with pytest.raises(InputError, match="unknown key"):
        Suite.from_config({**node, "datasets": [{"generate": "synthetic", "cell": [5]}]})
    with pytest.raises(InputError, match="unknown report section"):
        check_sections({"speeds": {}})
    with pytest.raises(InputError, match="needs two models"):
        check_sections({"speed": {"pairs": [["a"]]}})


def _table() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(1)
    for seed in range(4):
        for data in ("d1", "d2"):
            for model, cpu, ari in (("fast", 2.0, 0.5), ("slow", 6.0, 0.4)):
                rows.append(
                    {
                        "model": model,
                        "data": data,
                        "variant": "default",
                        "seed": seed,
                        "status": "ok",
                        "process.cpu_seconds": cpu * (1 + 0.1 * seed),
                        "ari": ari + rng.normal(0, 0.02),
                    }
                )
    return pd.DataFrame(rows)


def test_speed_ratios_on_the_same_rows():
    table = _table()
    table = table[~((table.model == "slow") & (table.seed == 3) & (table.data == "d2"))]
    _, out = speed_section(table, {"pairs": [["fast", "slow"]], "metrics": ["process.cpu_seconds"]})
    ratio = out[out.kind == "ratio"]
    assert len(ratio) == 7  # the row only 'fast' ran is left out
    assert np.allclose(ratio["process.cpu_seconds"], 1 / 3)
    runs = out[out.kind == "run"]  # every run of either side, with its own figure
    assert len(runs) == 15
    fast = runs[runs.model == "fast"].sort_values(["data", "seed"])
    want = table[table.model == "fast"].sort_values(["data", "seed"])["process.cpu_seconds"]
    assert np.allclose(fast["process.cpu_seconds"], want)


def test_speed_lists_the_runs_of_the_models_asked():
    """``models: all`` lists every finished run's cost, a list only those models', whatever
    the pairs; the ratios stay those of the pairs."""
    table = pd.concat([_table(), _table().assign(model="third")], ignore_index=True)
    spec = {"pairs": [["fast", "slow"]], "metrics": ["process.cpu_seconds"]}
    runs = {
        str(models): speed_section(table, {**spec, "models": models})[1].query("kind == 'run'")
        for models in ("all", ["third"], None)
    }
    assert runs["all"].model.value_counts().to_dict() == {"fast": 8, "slow": 8, "third": 16}
    assert set(runs["['third']"].model) == {"third"} and len(runs["['third']"]) == 16
    assert set(runs["None"].model) == {"fast", "slow"}
    ratio = speed_section(table, {**spec, "models": "all"})[1].query("kind == 'ratio'")
    assert len(ratio) == 8 and np.allclose(ratio["process.cpu_seconds"], 1 / 3)


def test_parity_is_paired_by_dataset_and_seed():
    table = _table()
    text, out = parity_section(table, {"pairs": [["fast", "slow"]], "metrics": ["ari"]})
    for data in ("d1", "d2"):
        a = table[(table.model == "fast") & (table.data == data)].sort_values("seed")["ari"]
        b = table[(table.model == "slow") & (table.data == data)].sort_values("seed")["ari"]
        diff = a.to_numpy() - b.to_numpy()
        ci = stats.ttest_rel(a, b).confidence_interval(0.95)
        row = out[out.data == data].iloc[0]
        assert row["mean"] == pytest.approx(diff.mean())
        assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high))
    assert "fast - slow" in text


@pytest.mark.slow
def test_scale_suite_on_tiny_sizes(tmp_path):
    """The real scale suite, two tiny sizes of one family, pca only, in-process (isolation is
    tested in test_isolate.py): the scale section's exponent equals numpy.polyfit through the
    rows' own numbers."""
    node = suite_node("scale")
    gen = dict(node["datasets"][0], cells=[200, 600], features={"rna": 60, "atac": 200})
    node.update(datasets=[gen], models=["pca"], isolate=False)
    suite = Suite.from_config(node)
    base = ["logger=csv", "eval.scib=false", "eval.leiden=false"]
    done = run_benchmark(suite, tmp_path, base, echo=lambda _: None, compose=compose_run)
    assert done.counts["ok"] == 2, done.table.get("error")
    table = pd.read_csv(tmp_path / "scale.csv")
    sizes = table[table.kind == "size"].sort_values("n_cells")
    assert list(sizes["n_cells"]) == [200, 600]
    expo = table[table.kind == "exponent"].iloc[0]
    for m in ("fit_seconds",):
        slope, _ = np.polyfit(np.log(sizes["n_cells"]), np.log(sizes[m]), 1)
        assert expo[m] == pytest.approx(slope)
    assert "## Scale" in (tmp_path / "report.md").read_text()
    # `mmint report` rebuilds the section from results.csv alone (a study still running)
    main(["report", str(tmp_path / "results.csv"), "suite=scale", f"out={tmp_path / 'again'}"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again/scale.csv"), table)
    assert "## Scale" in (tmp_path / "again/report.md").read_text()


@pytest.mark.slow
def test_scale_suite_comparators_fit_a_generated_row(tmp_path):
    """The scale suite's comparators (multiome-like rows only) fit a tiny generated row
    in-process; the CITE-like rows are skipped for them and said so in the report notes."""
    node = suite_node("scale")
    gen = dict(node["datasets"][0], cells=[300], features={"rna": 60, "atac": 200})
    cite = dict(node["datasets"][1], cells=[100000])
    node.update(datasets=[gen, cite], models=["wnn", "svd_ridge", "knn_transfer"])
    node.update(isolate=False)
    suite = Suite.from_config(node)
    assert [r.data for r in expand(suite)] == ["multiome_300cells"] * 3  # no CITE rows
    base = ["logger=csv", "eval.scib=false", "eval.leiden=false"]
    done = run_benchmark(suite, tmp_path, base, echo=lambda _: None, compose=compose_run)
    assert done.counts == {"ok": 3, "failed": 0, "cached": 0}, done.table.get("error")
    assert "comparators on the multiome-like rows only" in (tmp_path / "report.md").read_text()


STUDY_SUITES = ["scale", "speed", "parity_unitednet", "parity_multivi", "wnn_graph"]


@pytest.mark.parametrize("name", STUDY_SUITES)
def test_study_suites_expand(name):
    """Every study suite composes: known models, its pairs' models in the suite, a section."""
    from mmint.models import MODELS

    suite = Suite.from_config(suite_node(name))
    assert suite.name == name and suite.sections and expand(suite)
    assert set(suite.all_models) <= set(MODELS)
    for spec in suite.sections.values():
        for pair in spec.get("pairs", []):
            for ident in pair:
                model, _, variant = ident.partition("/")
                assert model in suite.models and (not variant or variant in suite.variants)


@pytest.fixture
def fake_original(tmp_path, monkeypatch):
    from models.fake_original import installed_fake

    yield from installed_fake(tmp_path, monkeypatch)


@pytest.mark.slow
def test_parity_unitednet_suite_on_a_fake_original(tmp_path, fake_original):
    """The real parity_unitednet suite on tiny synthetic data with the fake original: the
    Parity section's paired differences equal scipy's on the runs' own scores, the Speed
    section's ratios the runs' CPU seconds per epoch."""
    node = suite_node("parity_unitednet")
    node.update(
        datasets=["synthetic"],
        seeds=[0, 1, 2],
        model_overrides={m: {"model.max_epochs": 1} for m in node["models"]},
    )
    suite = Suite.from_config(node)
    tiny = [
        "logger=csv",
        "eval.scib=false",
        "eval.leiden=false",
        "data.simulate.n_cells=240",
        "data.simulate.n_types=4",
        "data.simulate.n_major=2",
        "++data.simulate.n_features={rna:40,atac:60,ephys:12}",
    ]
    done = run_benchmark(suite, tmp_path / "s", tiny, echo=lambda _: None, compose=compose_run)
    assert done.counts["ok"] == 6, done.table.get("error")
    table = done.table.sort_values("seed")
    parity = pd.read_csv(tmp_path / "s" / "parity.csv")
    a = table[table.model == "unitednet"]
    b = table[table.model == "unitednet_original"]
    row = parity[parity.metric == "ari"].iloc[0]
    ci = stats.ttest_rel(a["ari"], b["ari"]).confidence_interval(0.95)
    assert row["mean"] == pytest.approx(a["ari"].mean() - b["ari"].mean())
    assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high))
    speed = pd.read_csv(tmp_path / "s" / "speed.csv").sort_values("seed")
    ratio = speed[speed.kind == "ratio"]
    expected = a["cpu_seconds_per_epoch"].to_numpy() / b["cpu_seconds_per_epoch"].to_numpy()
    assert np.allclose(ratio["cpu_seconds_per_epoch"], expected)
    runs = speed[speed.kind == "run"]  # each run's own figures beside the ratios
    assert sorted(runs.model) == ["unitednet"] * 3 + ["unitednet_original"] * 3
    assert np.allclose(
        runs[runs.model == "unitednet"]["cpu_seconds_per_epoch"], a["cpu_seconds_per_epoch"]
    )
    report = (tmp_path / "s" / "report.md").read_text()
    assert "## Parity" in report and "## Speed" in report
