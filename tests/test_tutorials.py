"""The tutorials in ``docs/tutorials`` run top to bottom on tiny data
(``MMINT_TUTORIAL_SMALL=1``), and are stored without outputs.

Each notebook's code cells are executed in order in one namespace, as a kernel would (no
Jupyter needed); a failing cell fails the test with the cell's number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("*.ipynb"))


def _code_cells(path: Path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text())["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def test_there_are_three_tutorials():
    assert [p.stem for p in TUTORIALS] == ["01_compare_models", "02_your_own_data", "03_ablation"]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_top_to_bottom(path, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MMINT_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    try:
        for i, source in _code_cells(path):
            assert not source.lstrip().startswith(("%", "!")), f"cell {i}: no magics"
            exec(compile(source, f"{path.name}, cell {i}", "exec"), namespace)
    finally:
        plt.close("all")
