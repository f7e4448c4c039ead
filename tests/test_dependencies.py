"""The declared dependencies match the code: every package mmint imports is declared, and
every declared one is imported by mmint or listed below with the reason it is pinned."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: declared, not imported by mmint: why each is pinned
NOT_IMPORTED = {
    "jax": "scib-metrics' array backend (the CPU build that works with scib-metrics 0.5.10)",
    "jaxlib": "jax's compiled part, pinned to jax's version",
    "hydra-submitit-launcher": "Hydra's launcher plugin (hydra/launcher=submitit_local, slurm)",
    "umap-learn": "scanpy's sc.tl.umap (mmint/benchmark/plots.py)",
    "leidenalg": "scanpy's sc.tl.leiden (mmint/metrics/clustering.py)",
    "pynndescent": "an upper bound: 0.7 breaks scanpy 1.11.5's sc.pp.neighbors",
}
#: library calls that need a package the code never imports
INDIRECT = {".to_markdown(": "tabulate"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9._-]+", req.strip()).group(0))


def declared() -> tuple[set[str], set[str]]:
    """``(main dependencies, dependencies of the extras)`` by normalised name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {
        _requirement_name(r) for reqs in project["optional-dependencies"].values() for r in reqs
    }
    return {_requirement_name(r) for r in project["dependencies"]}, extras


def used() -> dict[str, set[str]]:
    """``{distribution: mmint files}`` for every third-party package mmint's code needs."""
    dists = packages_distributions()
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "mmint").rglob("*.py")):
        text = path.read_text()
        names = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        names -= {*sys.stdlib_module_names, "__future__", "mmint"}
        found = {_norm(d) for n in names for d in dists.get(n, [f"<not installed: {n}>"])}
        found |= {pkg for call, pkg in INDIRECT.items() if call in text}
        for dist in found:
            out.setdefault(dist, set()).add(str(path.relative_to(ROOT)))
    return out


def test_every_package_mmint_imports_is_declared():
    main, extras = declared()
    missing = {d: sorted(f)[:3] for d, f in used().items() if d not in main | extras}
    assert not missing, f"used but not declared in pyproject.toml: {missing}"


def test_every_declared_dependency_is_used_or_says_why():
    main, _ = declared()
    unused = sorted(main - set(used()) - set(NOT_IMPORTED))
    assert not unused, f"declared but never imported by mmint (drop them, or say why): {unused}"
    assert not set(NOT_IMPORTED) - main, "NOT_IMPORTED lists packages that are not declared"
