"""Every model's YAML (``mmint/conf/model/<name>.yaml``) says its constructor's defaults: one
key per constructor argument, each with the default's value, except the tuned values listed
in :data:`TUNED` (each documented in the YAML and the model's doc page). And every model
refuses a bad setting with a one-line :class:`~mmint.errors.InputError`."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from mmint.errors import InputError
from mmint.models import MODELS, build_model, model_class

from .configs import model_config
from .test_multivi import make_spec

#: keys of a model's YAML that are run settings, not constructor arguments
RUN_KEYS = {"name", "max_epochs", "batch_size"}
#: (model, key) -> the YAML's documented value where it differs from the constructor's default
TUNED: dict[tuple[str, str], Any] = {
    # docs/multivi.md "Quality": mmd, not scvi-tools' jeffreys (KMeans ARI 0.86 vs 0.44) and
    # lr 1e-3, not scvi-tools' 1e-4, so the default data trains in minutes on CPU
    ("multivi", "modality_penalty"): "mmd",
    ("multivi", "lr"): 1.0e-3,
    # docs/cvqvae.md "Quality" (table of the original's settings against the config's)
    ("cvqvae", "dropout"): 0.2,
    ("cvqvae", "align_weight"): 1.0,
    ("cvqvae", "self_recon"): True,
    ("cvqvae", "input_rep"): "pca",
    ("cvqvae", "n_pca"): 20,
    ("cvqvae", "decoder_batch"): True,
}
#: (key, YAML value, default) that mean the same (the scvi-tools adapters take None as {})
SAME_MEANING = {
    ("train_kwargs", "{}", "None"),
    ("model_kwargs", "{}", "None"),
    ("unitednet", "{}", "None"),  # unitednet_original: no unitednet settings changed
}


def _listed(value: Any) -> Any:
    """Tuples as lists (YAML has no tuples)."""
    return [_listed(v) for v in value] if isinstance(value, list | tuple) else value


def defaults(name: str) -> dict[str, Any]:
    """Constructor arguments of model ``name`` (after ``self`` and ``spec``) and defaults."""
    params = list(inspect.signature(model_class(name).__init__).parameters.values())[2:]
    return {p.name: _listed(p.default) for p in params}


def drifts(name: str, cfg: dict[str, Any]) -> list[str]:
    """Where the config ``cfg`` of model ``name`` differs from the constructor's defaults
    (other than :data:`TUNED` and :data:`SAME_MEANING`), or a tuned value drifted."""
    want = defaults(name)
    if set(cfg) - RUN_KEYS != set(want) - RUN_KEYS:
        return [f"keys: YAML {sorted(set(cfg) - RUN_KEYS)} != arguments {sorted(want)}"]
    out = []
    for key, default in want.items():
        value = cfg[key]
        if (name, key) in TUNED:
            if not value == TUNED[(name, key)] != default:
                out.append(f"{key}: tuned value {value!r} (listed {TUNED[(name, key)]!r})")
        elif value != default and (key, repr(value), repr(default)) not in SAME_MEANING:
            out.append(f"{key}: YAML {value!r} != default {default!r}")
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_yaml_values_are_the_constructor_defaults(name):
    cfg = model_config(name)
    assert cfg["name"] == name
    assert drifts(name, cfg) == []


def test_the_check_sees_a_drift():
    cfg = model_config("multivi")
    assert drifts("multivi", {**cfg, "dropout_rate": 0.3}) == [
        "dropout_rate: YAML 0.3 != default 0.1"
    ]
    assert drifts("multivi", {**cfg, "lr": 1.0e-4}) == ["lr: tuned value 0.0001 (listed 0.001)"]
    assert drifts("pca", {**model_config("pca"), "extra": 1})[0].startswith("keys:")


BAD = [
    ("unitednet", {"task": "nope"}, "unknown task"),
    ("multivi", {"gene_likelihood": "poisson"}, "unknown gene_likelihood"),
    ("multivi", {"modality_weights": "some"}, "unknown modality_weights"),
    ("cvqvae", {"input_rep": "lsi"}, "unknown input_rep"),
    ("cvqvae", {"recon_loss": "bce", "input_rep": "pca"}, "needs input_rep 'features'"),
]


@pytest.mark.parametrize(("name", "setting", "message"), BAD)
def test_a_bad_setting_is_an_input_error(name, setting, message):
    spec = make_spec()
    with pytest.raises(InputError, match=message) as err:
        build_model(name, spec, **setting)
    assert "\n" not in str(err.value) and "model." in str(err.value)


def test_cvqvae_needs_two_modalities():
    with pytest.raises(InputError, match="at least two modalities"):
        build_model("cvqvae", make_spec(("rna",)))
