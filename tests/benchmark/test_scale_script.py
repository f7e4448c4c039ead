"""benchmarks/scale.py: the growth exponent it reports (no fits here: the rows are made up)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(model, sizes, per_epoch, evals, rss, status="ok"):
    return [
        {
            "model": model,
            "dataset": "d",
            "n_cells": n,
            "n_features": 10,
            "seconds_per_epoch": t,
            "eval_seconds": e,
            "peak_rss_mb": r,
            "status": status,
            "note": "",
            "load_start": 1.0,
            "load_end": 1.0,
        }
        for n, t, e, r in zip(sizes, per_epoch, evals, rss, strict=True)
    ]


def test_exponent_is_the_log_log_slope(scale, tmp_path):
    sizes = np.array([1000, 3000, 10000])
    rows = _rows("m", sizes, 2e-3 * sizes**1.0, 1e-6 * sizes**2.0, 50 * sizes**0.5)
    rows += _rows("m", [30000], [1e9], [1e9], [1e9], status="timeout")  # left out
    rows += _rows("one", [1000], [1.0], [1.0], [1.0])  # a single size: no exponent
    table = pd.DataFrame(rows)
    exp = scale.exponents(table)
    assert list(exp["model"]) == ["m"] and exp.iloc[0]["sizes"] == "1000, 3000, 10000"
    assert exp.iloc[0]["seconds_per_epoch"] == pytest.approx(1.0)
    assert exp.iloc[0]["eval_seconds"] == pytest.approx(2.0)
    assert exp.iloc[0]["peak_rss_mb"] == pytest.approx(0.5)
    # independent check: numpy's least-squares line through the log-log points
    noisy = table[table["status"] == "ok"].copy()
    noisy.loc[noisy.index[1], "seconds_per_epoch"] *= 1.3
    slope = np.polyfit(np.log(sizes), np.log(noisy["seconds_per_epoch"].to_numpy()[:3]), 1)[0]
    assert scale.exponents(noisy).iloc[0]["seconds_per_epoch"] == pytest.approx(slope)
    scale.write_markdown(table, tmp_path / "scale.md", ["a note"])
    text = (tmp_path / "scale.md").read_text()
    line = next(line for line in text.splitlines() if "1000, 3000, 10000" in line)
    assert [c.strip() for c in line.strip("| ").split("|")] == [
        "m",
        "d",
        "1000, 3000, 10000",
        "1.00",
        "2.00",
        "0.50",
    ]
    assert "timeout" in text and "- a note" in text
