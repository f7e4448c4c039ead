"""Report aggregation against a hand-made results.csv (means, sd, paired t intervals)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mmint.benchmark.report import (
    ReportOptions,
    aggregate,
    build_report,
    paired_differences,
    ranks,
    summary_table,
    t_interval,
    time_line,
    with_derived,
)
from mmint.benchmark.results import read_results, write_results

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom


def cells(line: str) -> list[str]:
    """The cells of a markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _row(model, variant, seed, ari, r2_ra, r2_ar, status="ok"):
    return {
        "model": model,
        "data": "d1",
        "seed": seed,
        "variant": variant,
        "ari": ari,
        "r2.rna.rna": 0.9,
        "r2.rna.atac": r2_ra,
        "r2.atac.rna": r2_ar,
        "r2.atac.atac": 0.8,
        "foscttm": 0.2,
        "n_groups": 4,
        "ari_class": 0.9,
        "status": status,
        "error": "" if status == "ok" else "ValueError: boom",
        "run_dir": f"runs/{model}__d1__{variant}__seed{seed}",
    }


@pytest.fixture
def results(tmp_path) -> pd.DataFrame:
    rows = [
        _row("m", "ref", 0, 0.50, 0.1, 0.3),
        _row("m", "ref", 1, 0.60, 0.2, 0.2),
        _row("m", "ref", 2, 0.70, 0.3, 0.1),
        _row("m", "single", 0, 0.40, 0.05, 0.05),
        _row("m", "single", 1, 0.40, 0.1, 0.1),
        _row("m", "single", 2, 0.55, 0.0, 0.1),
        _row("pca", "default", 0, 0.30, 0.0, 0.0),
        _row("pca", "default", 1, 0.30, 0.0, 0.0),
        _row("pca", "default", 2, 0.30, 0.0, 0.0),
        {**_row("m", "ref", 3, 0.99, 0.9, 0.9, status="failed"), "ari": None, "r2.rna.atac": None},
    ]
    write_results(pd.DataFrame(rows), tmp_path / "results.csv")
    return read_results(tmp_path / "results.csv")


def test_mean_sd_and_cross_modal_r2(results):
    assert with_derived(results)["r2_cross"].iloc[0] == pytest.approx(0.2)
    agg = aggregate(results).set_index(["model", "variant"])
    ref = agg.loc[("m", "ref")]
    assert ref["n"] == 3  # the failed run is left out
    assert ref["ari_mean"] == pytest.approx(0.6)
    assert ref["ari_sd"] == pytest.approx(0.1)
    assert ref["r2_cross_mean"] == pytest.approx(0.2) and ref["r2_cross_sd"] == pytest.approx(0.0)
    single = agg.loc[("m", "single")]
    assert single["ari_mean"] == pytest.approx(1.35 / 3)
    assert single["r2_cross_mean"] == pytest.approx((0.05 + 0.1 + 0.05) / 3)
    assert agg.loc[("pca", "default"), "ari_sd"] == pytest.approx(0.0)
    r = ranks(aggregate(results))
    assert list(r) == [1.0, 2.0, 3.0] or sorted(r) == [1.0, 2.0, 3.0]


def test_paired_differences_and_t_interval(results):
    diffs = paired_differences(results, "ref").set_index(["variant", "metric"])
    assert set(diffs.index.get_level_values(0)) == {"single"}  # pca has no reference variant
    ari = diffs.loc[("single", "ari")]
    # variant - reference on the same seed: -0.10, -0.20, -0.15
    half = T_975_2 * 0.05 / math.sqrt(3)
    assert ari["n"] == 3
    assert ari["mean"] == pytest.approx(-0.15)
    assert ari["sd"] == pytest.approx(0.05)
    assert ari["ci_low"] == pytest.approx(-0.15 - half)
    assert ari["ci_high"] == pytest.approx(-0.15 + half)
    r2 = diffs.loc[("single", "r2_cross")]
    d = [-0.15, -0.10, -0.15]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    assert r2["mean"] == pytest.approx(mean) and r2["sd"] == pytest.approx(sd)
    assert r2["ci_high"] == pytest.approx(mean + T_975_2 * sd / math.sqrt(3))
    assert t_interval([1.0])[2] != t_interval([1.0])[2]  # NaN interval with one pair
    assert t_interval([0.1, 0.1, None, 0.1]) == pytest.approx((0.1, 0.0, 0.1, 0.1, 3))


def test_report_text(results):
    text = build_report(
        results,
        ReportOptions(
            name="t",
            reference="ref",
            floor=["pca"],
            single_task_variants=["single"],
            notes=["skipped dataset x: not set"],
        ),
    )
    lines = text.splitlines()
    assert lines[0] == "# Benchmark `t`"
    summary = text.split("## Summary")[1].split("##")[0]
    header = next(line for line in summary.splitlines() if line.startswith("| data"))
    assert header.split("|")[4].strip() == "ARI"  # ARI leads the metrics
    ref_line = next(line for line in summary.splitlines() if cells(line)[1:3] == ["m", "ref"])
    assert "0.600 ± 0.100" in ref_line and "+0.300" in ref_line  # ARI - pca floor
    assert "1 failed" in text and "ValueError: boom" in text
    assert "cluster->class map is fitted on training cells" in text
    assert "skipped dataset x" in text
    assert "## d1" in text and "ARI - pca" in text and "(floor)" in text
    assert "paired differences vs `ref`" in text
    assert "-0.150 [" in text
    verdict = [line for line in lines if cells(line)[:3] == ["d1", "m", "single"]][-1]
    assert cells(verdict)[-1] == "yes: better on both"
    assert "+0.150 [" in verdict
    assert summary_table(results.iloc[:0]) == "(no finished runs)"


def test_metrics_that_do_not_apply_read_na(results):
    """A model whose metrics.json marks foscttm not applicable shows n/a (not a blank '-'),
    and the report says why."""
    rows = [
        {
            **_row("wnn", "default", s, 0.5, 0.1, 0.1),
            "foscttm": None,
            "not_applicable.foscttm": "spaces are not aligned",
        }
        for s in range(2)
    ]
    table = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
    agg = aggregate(table)
    wnn = agg[agg["model"] == "wnn"].iloc[0]
    assert bool(wnn["foscttm_na"]) and not bool(agg[agg["model"] == "pca"].iloc[0]["foscttm_na"])
    text = build_report(table, ReportOptions(name="t", reference="ref"))
    wnn_line = next(line for line in summary_table(table).splitlines() if cells(line)[1] == "wnn")
    assert "n/a" in wnn_line
    assert "`n/a` for `wnn`: foscttm: spaces are not aligned." in text


def test_scib_batch_scores_beside_bio(results):
    """With several batches the report shows scIB batch correction next to bio conservation,
    with the metrics behind them, leaves it out of the rank (scIB total has it), and says when
    the scIB metrics scored a subsample."""
    scib = {
        ("m", "ref"): (0.60, 0.40, [0.30, 0.50, 0.40]),
        ("m", "single"): (0.50, 0.70, [0.60, 0.80, 0.70]),
        ("pca", "default"): (0.40, 0.20, [0.10, 0.30, 0.20]),
    }
    table = results.copy()
    for (model, variant), (bio, batch, ilisi) in scib.items():
        rows = (table["model"] == model) & (table["variant"] == variant) & (table["seed"] < 3)
        table.loc[rows, "scib.bio_conservation"] = bio
        table.loc[rows, "scib.batch_correction"] = batch
        table.loc[rows, "scib.total"] = 0.6 * bio + 0.4 * batch
        table.loc[rows, "scib.metrics.silhouette_label"] = bio
        table.loc[rows, "scib.metrics.ilisi_knn"] = ilisi
        table.loc[rows, "scib.subsample.n_cells"] = 100
        table.loc[rows, "scib.subsample.n_cells_total"] = 100
    # one run scored a subsample
    first = table.index[(table["model"] == "pca") & (table["seed"] == 0)][0]
    table.loc[first, "scib.subsample.n_cells"] = 50
    table.loc[first, "scib.subsample.how"] = "stratified by label"
    text = build_report(table, ReportOptions(name="t", reference="ref"))
    section = text.split("### d1: scIB bio conservation and batch correction")[1]
    lines = section.strip().splitlines()
    assert cells(lines[0]) == [
        "model",
        "variant",
        "scIB bio",
        "scIB batch",
        "scIB total",
        "silhouette_label",
        "ilisi_knn",
    ]
    single = next(cells(line) for line in lines if cells(line)[:2] == ["m", "single"])
    # ilisi 0.6 / 0.8 / 0.7: mean 0.7, sd 0.1
    assert single[2:4] == ["0.500 ± 0.000", "0.700 ± 0.000"] and single[6] == "0.700 ± 0.100"
    assert "The scIB metrics of 1 of 9 runs scored a subsample of 50-50 of 100-100" in text
    assert "stratified by label" in text
    # the dataset table shows scIB batch next to bio; the rank does not count it
    main = text.split("## d1")[1].split("###")[0]
    header = next(cells(line) for line in main.splitlines() if line.startswith("| model"))
    assert header.index("scIB batch") == header.index("scIB bio") + 1
    rank_text = next(line for line in main.splitlines() if line.startswith("Mean ± sd"))
    assert "scIB bio" in rank_text and "scIB batch" not in rank_text
    # one batch (no batch correction): no scIB table
    one = table.drop(columns=[c for c in table.columns if "batch_correction" in c])
    assert "scIB bio conservation and batch correction" not in build_report(
        one, ReportOptions(name="t", reference="ref")
    )


def test_time_line_sums_finished_runs_that_recorded_both(results):
    assert time_line(results) == ""  # older runs: no eval_seconds, no line
    t = results.assign(fit_seconds=[10.0] * 9 + [99.0], eval_seconds=[2.0] * 9 + [99.0])
    t.loc[0, "eval_seconds"] = None  # not recorded: the run is left out of both sums
    line = time_line(t)
    assert "fit 80 s, evaluation (test scores and outputs) 16 s (20% of fit)" in line
    assert "over the 8 finished run(s)" in line
    assert line in build_report(t, ReportOptions(name="s", floor=["pca"]))
