"""The code base's size budgets: small modules in ``mmint/``, and ``benchmarks/`` holding only
the profilers (every study is a suite of ``mmint benchmark``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_LINES = 450
PROFILER_LINES = 800


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_in_mmint_over_the_budget():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "mmint").rglob("*.py")
        if (n := _lines(p)) > MODULE_LINES
    }
    assert not long, f"split these modules (over {MODULE_LINES} lines): {long}"


def test_benchmarks_hold_only_the_profilers():
    files = sorted((ROOT / "benchmarks").glob("*.py"))
    assert files, "benchmarks/*.py not found"
    total = sum(_lines(p) for p in files)
    assert total <= PROFILER_LINES, f"benchmarks/*.py: {total} lines (budget {PROFILER_LINES})"
