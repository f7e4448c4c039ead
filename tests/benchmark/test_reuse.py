"""Stale results are never reused silently: the reuse key covers the model's built
hyper-parameters (code defaults included) and the input data; runs without a key are matched
by config hash only (``key: legacy``); ``suite.reuse=stale_ok`` reuses stale runs, marked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.benchmark.results import provenance_notes, read_results
from mmint.benchmark.reuse_check import ReuseCheck
from mmint.benchmark.runner import run_suite
from mmint.cli import compose_run
from mmint.config import plain
from mmint.data import load_dataset
from mmint.models.pca import PCABaseline
from mmint.reuse import data_fingerprint

from .conftest import tiny_suite


def _suite(**kw):
    # pca takes ridge_alpha from the code default (not the YAML): a default change reaches it
    return tiny_suite(
        models=["pca", "knn_transfer"],
        seeds=[0, 1],
        floor=[],
        model_overrides={"pca": ["~model.ridge_alpha"]},
        **kw,
    )


def _metrics(suite_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in suite_dir.glob("runs/*/metrics.json")}


def _mtimes(suite_dir: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in suite_dir.glob("runs/*/metrics.json")}


def test_changed_model_default_reruns_only_the_affected_runs(tmp_path, monkeypatch):
    base = ["logger=csv"]
    lines: list[str] = []
    first = run_suite(_suite(), tmp_path, base, echo=lines.append, compose=compose_run)
    assert first.counts == {"ok": 4, "failed": 0, "cached": 0}
    before, mtimes = _metrics(tmp_path), _mtimes(tmp_path)
    pca = sorted(n for n in before if n.startswith("pca__"))
    knn = sorted(n for n in before if n.startswith("knn_transfer__"))
    assert len(pca) == len(knn) == 2
    assert all(before[n]["reuse"]["model_hparams"]["ridge_alpha"] == 1.0 for n in before)

    # a new code default (the constructor's), no YAML change: the config hash is the same
    defaults = PCABaseline.__init__.__defaults__
    assert defaults[1] == 1.0  # (n_components, ridge_alpha, seed, fit_max_cells)
    monkeypatch.setattr(PCABaseline.__init__, "__defaults__", (defaults[0], 2.0, *defaults[2:]))
    lines.clear()
    second = run_suite(_suite(), tmp_path, base, echo=lines.append, compose=compose_run)
    assert second.counts == {"ok": 2, "failed": 0, "cached": 2}
    after, mtimes2 = _metrics(tmp_path), _mtimes(tmp_path)
    assert {n: mtimes2[n] for n in knn} == {n: mtimes[n] for n in knn}  # untouched
    for n in pca:
        assert mtimes2[n] != mtimes[n]
        assert after[n]["config_hash"] == before[n]["config_hash"]
        assert after[n]["reuse"]["model_hparams"]["ridge_alpha"] == 2.0
        assert after[n]["reuse"]["key"] != before[n]["reuse"]["key"]
        (note,) = [ln for ln in lines if ln.startswith(f"note: {n}: rerun")]
        assert "model defaults changed: ridge_alpha 1.0 -> 2.0" in note
    # the cross-modal R2 follows the ridge: the rerun really used the new default
    assert after[pca[0]]["r2"] != before[pca[0]]["r2"]
    table = read_results(tmp_path / "results.csv")
    assert set(table["key"]) == {"match"} and table["reuse.key"].notna().all()

    # unchanged again: everything reused
    third = run_suite(_suite(), tmp_path, base, echo=lambda _: None, compose=compose_run)
    assert third.counts == {"ok": 0, "failed": 0, "cached": 4}

    # the default back to 1.0 with stale_ok: the pca runs are reused, marked stale
    monkeypatch.undo()
    lines.clear()
    kept = run_suite(
        _suite(reuse="stale_ok"), tmp_path, base, echo=lines.append, compose=compose_run
    )
    assert kept.counts == {"ok": 0, "failed": 0, "cached": 4}
    assert _mtimes(tmp_path) == mtimes2
    table = read_results(tmp_path / "results.csv").set_index(
        table["run_dir"].map(lambda r: Path(r).name)
    )
    assert {n: table.loc[n, "key"] for n in pca + knn} == {
        **{n: "stale" for n in pca},
        **{n: "match" for n in knn},
    }
    (note,) = [n for n in provenance_notes(table.reset_index(drop=True)) if "`key: stale`" in n]
    assert note.startswith("2 run(s) reused although") and pca[0] in note


def test_runs_without_a_key_are_reused_as_legacy(tmp_path, fake_fit, monkeypatch):
    """metrics.json of older mmint (no `reuse`): matched by config hash, `key: legacy`."""
    monkeypatch.setenv("CI", "true")  # progress lines through echo
    suite = tiny_suite(floor=[])
    run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    lines: list[str] = []
    done = run_suite(suite, tmp_path, ["logger=csv"], echo=lines.append, compose=compose_run)
    assert done.counts == {"ok": 0, "failed": 0, "cached": 3} and len(fake_fit) == 3
    table = read_results(tmp_path / "results.csv")
    assert set(table["key"]) == {"legacy"}
    assert sum("key: legacy" in ln for ln in lines) == 3
    (note,) = provenance_notes(table)
    assert note.startswith("3 run(s) made before mmint recorded a reuse key")


def _tiny_data():
    return plain(compose_run(tiny_suite().overrides)["data"])


def test_data_fingerprint_sees_values_names_and_labels():
    data_cfg = _tiny_data()
    a, b = load_dataset(data_cfg), load_dataset(data_cfg)
    fa = data_fingerprint(a)
    assert data_fingerprint(b) == fa  # deterministic
    m = next(iter(b.modalities))
    mod = b.modalities[m]
    x = mod.x.toarray() if hasattr(mod.x, "toarray") else np.array(mod.x)
    x[0, 0] += 1.0  # row 0 is always sampled
    mod.x = x
    fb = data_fingerprint(b)
    assert fb["modalities"][m]["sample"] != fa["modalities"][m]["sample"]
    assert fb["modalities"][m]["shape"] == fa["modalities"][m]["shape"] and fb["hash"] != fa["hash"]
    c = load_dataset(data_cfg)
    c.modalities[m].var_names = pd.Index([f"g{i}" for i in range(len(mod.var_names))])
    assert data_fingerprint(c)["modalities"][m]["features"] != fa["modalities"][m]["features"]
    d = load_dataset(data_cfg)
    d.obs[d.label_key] = d.obs[d.label_key].astype(str).to_numpy()[::-1]
    assert data_fingerprint(d)["labels"] != fa["labels"]


def test_changed_input_data_is_stale(tmp_path, monkeypatch):
    """Same config, different data behind it (a data file changed in place): stale."""
    from mmint.fit import run_fit

    cfg = compose_run(["model=pca", "logger=csv", *tiny_suite().overrides])
    run_fit(cfg, tmp_path)
    assert ReuseCheck().state(tmp_path, cfg) == ("match", "")
    import mmint.data

    real = mmint.data.load_dataset

    def changed(data_cfg):
        data = real(data_cfg)
        mod = next(iter(data.modalities.values()))
        x = mod.x.toarray() if hasattr(mod.x, "toarray") else np.array(mod.x)
        x[0, 0] += 1  # one value of a sampled row
        mod.x = x
        return data

    monkeypatch.setattr("mmint.data.load_dataset", changed)
    assert ReuseCheck().state(tmp_path, cfg) == ("stale", "the input data changed")


def test_report_lists_runs_made_under_other_commits():
    table = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "failed"],
            "key": ["match", "match", "match", ""],
            "versions.mmint": ["0.1.0"] * 4,
            "versions.mmint_commit": ["aaa", "aaa", "bbb", "ccc"],
            "run_dir": ["runs/r1", "runs/r2", "runs/r3", "runs/r4"],
        }
    )
    (note,) = provenance_notes(table)
    assert note == "runs made under different commits (aaa: `r1`, `r2`; bbb: `r3`)"
