"""Outside ``mmint/models/`` code asks a model through its interface, never by name: no model
name as a string test (``name == "unitednet"``, ``name in ("pca", ...)``), no read of an
attribute that :class:`~mmint.models.base.Integrator` (or the whole-set and LightningModule
bases) does not declare (``model.module``, ``model.ridge``, ``model._x``), and no ``hasattr``
probe for a whole-set model (``isinstance(model, WholeSetIntegrator)`` says it).

Every module is parsed with ``ast``; the rules are checked on snippets first, so the scan
can fail."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mmint.models import MODELS
from mmint.models.base import IntegratorModule
from mmint.models.persist import SavedByAttributes
from mmint.models.wholeset import WholeSetIntegrator

PACKAGE = Path(__file__).resolve().parents[1] / "mmint"
#: names that hold a model in code outside mmint/models (``x.model`` is one too)
MODEL_NAMES = {"model", "integrator", "pl_module"}
#: methods only a whole-set model has: probing for them asks "is it a whole-set model"
WHOLE_SET_ONLY = {"embed_cells", "predict_cells", "embed"}


def interface() -> set[str]:
    """Public attributes declared by the model bases (methods, class attributes, annotations)."""
    names: set[str] = set()
    for base in (IntegratorModule, WholeSetIntegrator, SavedByAttributes):
        names |= set(dir(base))
        for cls in base.__mro__:
            names |= set(getattr(cls, "__annotations__", {}))
    return {n for n in names if not n.startswith("_")}


def _is_model(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in MODEL_NAMES
    return isinstance(node, ast.Attribute) and node.attr == "model"


def _constants(node: ast.AST) -> list[object]:
    if isinstance(node, ast.Constant):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant)]
    return []


def violations(source: str, allowed: set[str], models: set[str]) -> list[str]:
    """Lines of ``source`` that test a model's name or reach past the model interface."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{getattr(node, 'lineno', '?')}: {ast.unparse(node)}"
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(v, str) and v in models for s in sides for v in _constants(s)):
                found.append(f"model name test {where}")
        elif isinstance(node, ast.Attribute) and _is_model(node.value):
            if node.attr not in allowed:
                found.append(f"model attribute {node.attr!r} {where}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and _is_model(node.args[0])
            and isinstance(node.args[1], ast.Constant)
        ):
            attr = node.args[1].value
            if node.func.id == "hasattr" and attr in WHOLE_SET_ONLY:
                found.append(f"whole-set probe (use isinstance) {where}")
            elif attr not in allowed:
                found.append(f"model attribute {attr!r} {where}")
    return found


def outside_models() -> list[Path]:
    """Every module of ``mmint/`` outside ``mmint/models/``."""
    return [
        p for p in sorted(PACKAGE.rglob("*.py")) if "models" not in p.relative_to(PACKAGE).parts
    ]


BAD = {
    'if model.name == "unitednet":\n    pass': "model name test",
    'ok = getattr(model, "name", None) in ("pca", "wnn")': "model name test",
    'net = TranslationNet(model.module, "a", "b")': "model attribute 'module'",
    "coef = self.model.ridge": "model attribute 'ridge'",
    "x = pl_module._cache": "model attribute '_cache'",
    'k = getattr(model, "n_groups", 3)': "model attribute 'n_groups'",
    'if hasattr(model, "embed_cells"):\n    pass': "whole-set probe",
}


@pytest.mark.parametrize("source", list(BAD))
def test_the_scan_finds_each_kind_of_violation(source):
    found = violations(source, interface(), set(MODELS))
    assert len(found) == 1 and found[0].startswith(BAD[source]), found


def test_the_scan_passes_the_interface():
    ok = (
        "z = model.joint_latent(batch)\nnet = model.translator('a', 'b')\n"
        "if isinstance(model, WholeSetIntegrator) and not model.translates:\n    pass\n"
        "k = model.group_count()\nname = cfg['model']['name'] == other\nmodel.eval()"
    )
    assert violations(ok, interface(), set(MODELS)) == []


def test_nothing_outside_models_tests_a_name_or_reaches_into_a_model():
    files = outside_models()
    assert len(files) > 50  # the scan sees the package
    allowed, models = interface(), set(MODELS)
    found = [
        f"{p.relative_to(PACKAGE.parent)}:{v}"
        for p in files
        for v in violations(p.read_text(), allowed, models)
    ]
    assert not found, "\n".join(found)
