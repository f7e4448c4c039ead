"""SHAP relevance analysis of fitted integrators (``mmint explain``).

- :mod:`mmint.explain.subnets`: the models' explain hooks as plain modules;
- :mod:`mmint.explain.relevance`: shap (DeepExplainer when additive, else GradientExplainer),
  feature-to-group and feature-to-feature relevance tables;
- :mod:`mmint.explain.runs`: explaining a run directory (``<run>/explain/``);
- :mod:`mmint.explain.links`: scoring relevance against planted links of simulated data;
- :mod:`mmint.explain.plots`: top-feature bars and feature-to-feature heatmaps.

See ``docs/explain.md``.
"""

from mmint.explain.relevance import (
    Groups,
    ShapResult,
    feature_relevance,
    group_relevance,
    make_groups,
    shap_values,
)
from mmint.explain.runs import DEFAULTS, explain_run, load_run
from mmint.explain.subnets import Columns, group_network, translator

__all__ = [
    "DEFAULTS",
    "Columns",
    "Groups",
    "ShapResult",
    "explain_run",
    "feature_relevance",
    "group_network",
    "group_relevance",
    "load_run",
    "make_groups",
    "shap_values",
    "translator",
]
