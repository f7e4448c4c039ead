"""Runner: real pca runs, resume after a kill, failure isolation, results.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mmint.benchmark.grid import expand
from mmint.benchmark.long_fits import fit_cost_seconds
from mmint.benchmark.results import flatten, folder_results, read_results
from mmint.benchmark.runner import is_done, one_line, run_suite
from mmint.cli import compose_run
from mmint.io import write_json

from .conftest import fake_metrics, tiny_suite


def _mtimes(suite_dir: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in suite_dir.glob("runs/*/metrics.json")}


def test_resume_after_kill(tmp_path, monkeypatch):
    """Kill after the 2nd run: results.csv holds the 2 finished runs; the re-run skips them
    (metrics.json untouched) and adds the 3rd; a deleted metrics.json is re-run."""
    import mmint.fit

    suite = tiny_suite()
    base = ["logger=csv"]
    real_fit = mmint.fit.run_fit
    calls = []

    def killed_on_third(cfg, run_dir):
        calls.append(Path(run_dir).name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C / a kill does mid-suite
        return real_fit(cfg, run_dir)

    monkeypatch.setattr("mmint.fit.run_fit", killed_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, tmp_path, base, echo=lambda _: None, compose=compose_run)
    table = read_results(tmp_path / "results.csv")
    assert list(table["seed"]) == [0, 1] and set(table["status"]) == {"ok"}
    before = _mtimes(tmp_path)
    assert len(before) == 2

    monkeypatch.setattr("mmint.fit.run_fit", real_fit)
    done = run_suite(suite, tmp_path, base, echo=lambda _: None, compose=compose_run)
    assert done.counts == {"ok": 1, "failed": 0, "cached": 2}
    after = _mtimes(tmp_path)
    assert {k: after[k] for k in before} == before
    table = read_results(tmp_path / "results.csv")
    assert list(table["seed"]) == [0, 1, 2] and set(table["status"]) == {"ok"}
    assert list(table.columns[:4]) == ["model", "data", "seed", "variant"]
    assert list(table.columns[-3:]) == ["status", "error", "run_dir"]
    for col in ("ari", "r2.rna.atac", "versions.torch", "split.n_test", "foscttm_pairs.atac.rna"):
        assert col in table.columns, col
    assert table["run_dir"][0] == "runs/pca__synthetic__default__seed0"
    metrics = json.loads((tmp_path / table["run_dir"][2] / "metrics.json").read_text())
    assert metrics["seed"] == 2 and metrics["variant"] == "default"

    (tmp_path / table["run_dir"][1] / "metrics.json").unlink()
    done = run_suite(suite, tmp_path, base, echo=lambda _: None, compose=compose_run)
    assert done.counts == {"ok": 1, "failed": 0, "cached": 2}
    assert len(read_results(tmp_path / "results.csv")) == 3


def test_a_narrowed_suite_keeps_the_folders_other_runs(tmp_path, fake_fit):
    """Rerunning some of a folder's runs (suite.models / suite.datasets / seeds narrowed)
    keeps the other finished runs in results.csv, read from their folders."""
    import shutil

    base = ["logger=csv"]
    run_suite(tiny_suite(), tmp_path, base, echo=lambda _: None, compose=compose_run)
    (tmp_path / "results.csv").unlink()  # the table comes from the run folders, not from it
    lines: list[str] = []
    done = run_suite(tiny_suite(seeds=[1]), tmp_path, base, echo=lines.append, compose=compose_run)
    assert done.counts["cached"] == 1 and len(fake_fit) == 3
    assert "note: results.csv keeps 2 finished run(s) outside this grid" in lines
    table = read_results(tmp_path / "results.csv")
    assert sorted(table["seed"]) == [0, 1, 2] and set(table["status"]) == {"ok"}
    assert table.loc[table["seed"] == 2, "ari"].item() == pytest.approx(0.52)
    shutil.rmtree(tmp_path / "runs" / "pca__synthetic__default__seed2")
    run_suite(tiny_suite(seeds=[1]), tmp_path, base, echo=lambda _: None, compose=compose_run)
    assert sorted(read_results(tmp_path / "results.csv")["seed"]) == [0, 1]


def test_folder_results_equal_the_suites_table(tmp_path):
    """A suite folder's table rebuilt from its runs' metrics.json / failed.json equals the
    results.csv the suite wrote (one run failed by a bad override)."""
    suite = tiny_suite(
        seeds=[0, 1], floor=[], variants={"default": {}, "bad": ["model.no_such_key=1"]}
    )
    run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    written = read_results(tmp_path / "results.csv").drop(columns="key")
    rebuilt = folder_results(tmp_path)
    assert len(written) == 4 and set(written["status"]) == {"ok", "failed"}
    order = ["run_dir"]
    pd.testing.assert_frame_equal(
        rebuilt.sort_values(order).reset_index(drop=True),
        written.sort_values(order).reset_index(drop=True)[rebuilt.columns],
        check_dtype=False,
    )


def test_changed_config_is_not_done(tmp_path, fake_fit):
    suite = tiny_suite(seeds=[0], floor=[])
    run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    (run,) = expand(suite, ["logger=csv"])
    run_dir = tmp_path / "runs" / run.name
    assert is_done(run_dir, compose_run(run.overrides))
    # the logger does not change results; a hyper-parameter does
    assert is_done(run_dir, compose_run([*run.overrides, "logger=none"]))
    assert not is_done(run_dir, compose_run([*run.overrides, "model.n_components=3"]))


def test_failure_isolation(tmp_path, monkeypatch, fake_fit):
    """An exception in one run and a bad override in another fail those runs only."""
    import mmint.fit

    ok_fit = mmint.fit.run_fit

    def flaky(cfg, run_dir):
        if cfg["seed"] == 1:
            raise ValueError("boom\n  on a second line")
        return ok_fit(cfg, run_dir)

    monkeypatch.setattr("mmint.fit.run_fit", flaky)
    monkeypatch.setenv("CI", "true")
    lines = []
    suite = tiny_suite(variants={"default": {}, "bad": ["model.no_such_key=1"]}, floor=[])
    done = run_suite(suite, tmp_path, ["logger=csv"], echo=lines.append, compose=compose_run)
    assert done.counts == {"ok": 2, "failed": 4, "cached": 0}
    table = read_results(tmp_path / "results.csv").set_index(["variant", "seed"])
    assert (
        table.loc[("default", 0), "status"] == "ok" and table.loc[("default", 2), "status"] == "ok"
    )
    assert table.loc[("default", 1), "status"] == "failed"
    assert table.loc[("default", 1), "error"] == "ValueError: boom on a second line"
    for seed in (0, 1, 2):
        err = table.loc[("bad", seed), "error"]
        assert (
            table.loc[("bad", seed), "status"] == "failed"
            and "\n" not in err
            and "no_such_key" in err
        )
    failed = json.loads((tmp_path / "runs/pca__synthetic__default__seed1/failed.json").read_text())
    assert failed["status"] == "failed" and "Traceback" in failed["traceback"]
    assert sum("failed" in line for line in lines) == 4

    # a resume retries the failed run; its success replaces failed.json
    monkeypatch.setattr("mmint.fit.run_fit", ok_fit)
    suite = tiny_suite(floor=[])
    done = run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    assert done.counts == {"ok": 1, "failed": 0, "cached": 2}
    assert not (tmp_path / "runs/pca__synthetic__default__seed1/failed.json").exists()
    table = read_results(tmp_path / "results.csv")
    assert set(table.loc[table["variant"] == "default", "status"]) == {"ok"}
    # the runs of the variant this rerun left out stay in the table as they are
    assert set(table.loc[table["variant"] == "bad", "status"]) == {"failed"}


def test_ci_progress_is_one_plain_line_per_run(tmp_path, monkeypatch, fake_fit):
    monkeypatch.setenv("CI", "true")
    lines = []
    run_suite(
        tiny_suite(seeds=[0, 1]), tmp_path, ["logger=csv"], echo=lines.append, compose=compose_run
    )
    assert len(lines) == 2
    assert lines[0].startswith("[1/2] pca__synthetic__default__seed0: ok (")
    assert lines[1].startswith("[2/2] pca__synthetic__default__seed1: ok (")


@pytest.mark.parametrize("epochs, runs", [(50, ["seed0"]), (10, ["seed0", "seed1", "seed2"])])
def test_a_long_fit_runs_one_seed(tmp_path, monkeypatch, epochs, runs):
    """suite.one_seed_above_s: seed 0's fit cost 50 epochs x 100 CPU s > 3,600 s, so seeds 1
    and 2 are not run and the report's notes say why; 10 epochs (1,000 s) run every seed."""
    calls = []

    def run_fit(cfg, run_dir):
        calls.append(Path(run_dir).name.rsplit("__", 1)[-1])
        metrics = {**fake_metrics(cfg), "status": "ok", "epochs": epochs}
        write_json(Path(run_dir) / "metrics.json", {**metrics, "cpu_seconds_per_epoch": 100.0})
        return {}

    monkeypatch.setattr("mmint.fit.run_fit", run_fit)
    monkeypatch.setenv("CI", "true")
    lines = []
    suite = tiny_suite(floor=[], one_seed_above_s=3600)
    done = run_suite(suite, tmp_path, ["logger=csv"], echo=lines.append, compose=compose_run)
    assert calls == runs
    assert list(read_results(tmp_path / "results.csv")["seed"]) == list(range(len(runs)))
    if len(runs) == 1:
        assert done.counts == {"ok": 1, "failed": 0, "cached": 0, "not_run": 2}
        assert done.notes == [
            f"`pca` on `synthetic`: seed {s} not run; seed 0's fit took 83 min of CPU, over "
            "suite.one_seed_above_s (60 min)"
            for s in (1, 2)
        ]
        assert lines[1].startswith("[2/3] pca__synthetic__default__seed1: not run: ")
        # a later run of the suite leaves them out again, from seed 0's metrics.json
        again = run_suite(suite, tmp_path, ["logger=csv"], echo=lines.append, compose=compose_run)
        assert again.counts == {"ok": 0, "failed": 0, "cached": 1, "not_run": 2}
    else:
        assert done.counts == {"ok": 3, "failed": 0, "cached": 0} and not done.notes


def test_fit_cost_seconds():
    assert fit_cost_seconds({"cpu_seconds_per_epoch": 2.5, "epochs": 4, "fit_seconds": 1}) == 10
    assert fit_cost_seconds({"cpu_seconds_per_epoch": None, "fit_seconds": 7.0}) == 7.0
    assert fit_cost_seconds({}) is None


def test_helpers():
    assert one_line(ValueError("a\nb   c")) == "ValueError: a b c"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(RuntimeError("\x1b[1mbold\x1b[0m x")) == "RuntimeError: bold x"
    assert len(one_line(ValueError("x" * 2000))) == 500
    assert flatten({"r2": {"rna": {"atac": 1}}, "v": [1, 2], "e": {}}) == {
        "r2.rna.atac": 1,
        "v": "1;2",
    }
