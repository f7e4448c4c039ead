"""Where mmint's UnitedNet may differ from the original code, one switch per deviation.

Each switch is a model hyper-parameter whose value ``None`` means "follow ``compat``":
``compat: original`` gives the original's behaviour (defects included), ``compat: null`` gives
mmint's default (since the parity study the original's behaviour except for noise-free
inference). An explicit value always wins. The measured effect of every switch on
Patch-seq is in ``docs/unitednet.md`` (deviations table) and
``benchmarks/results/unitednet_parity.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from mmint.errors import InputError

COMPATS = ("original",)
BEST_HEAD_RULES = ("val_argmin", "vote")
HEAD_REINITS = ("kaiming_normal", "default")


@dataclass(frozen=True)
class Deviations:
    """The resolved switches (see the module docstring).

    Attributes
    ----------
    contrastive_per_head
        Divide the contrastive weight by ``n_head`` (the original: its contrastive term is one
        best-head term scaled like the per-head losses).
    ddc_sum_over_heads
        Sum the DDC loss over heads while the other group losses are averaged (the original
        divides self-entropy and cross-entropy by ``n_head`` but not DDC).
    shared_discriminator_optimizer
        The discriminators sit in the translation optimiser and their loss joins the
        translation step's single backward (the original; the discriminators then also learn
        from the generator loss). ``False``: their own optimiser, stepped after each
        translation step on the detached reconstructions.
    gradient_clip_val
        Gradient-norm clip per step; ``None`` is off (the original's clipping is a no-op).
    best_head_rule
        ``val_argmin``: the head with the lowest selection loss on the validation cells of the
        epoch. ``vote`` (the original): the argmin after every pass that has group losses
        (training passes and the validation pass), and a head that won at least
        ``max_epochs // 3`` of those passes so far (counted across stages) is kept.
    noise_at_inference
        Input noise also at inference, and decoders scored against the noised input (the
        original). ``False``: noise in training only, clean targets.
    head_reinit
        Initialisation of heads re-created between stages (``reinit_group_heads``):
        ``kaiming_normal`` as at construction, or torch's ``default`` (the original, whose
        re-created heads skip its Kaiming initialisation).
    constant_discriminator
        A discriminator configured as ``Linear(-> 1) -> LayerNorm(1) -> sigmoid`` outputs a
        constant (the original's atacseq and dbitseq configs): the adversarial game then has
        no effect, so the GAN losses are off. ``False``: the LayerNorm is dropped and the
        discriminator works.
    """

    contrastive_per_head: bool
    ddc_sum_over_heads: bool
    shared_discriminator_optimizer: bool
    gradient_clip_val: float | None
    best_head_rule: str
    noise_at_inference: bool
    head_reinit: str
    constant_discriminator: bool


#: the original code's behaviour for every switch
ORIGINAL = Deviations(
    contrastive_per_head=True,
    ddc_sum_over_heads=True,
    shared_discriminator_optimizer=True,
    gradient_clip_val=None,
    best_head_rule="vote",
    noise_at_inference=True,
    head_reinit="default",
    constant_discriminator=True,
)

#: mmint's defaults, chosen by measurement on Patch-seq (docs/unitednet.md, deviations table):
#: the original's behaviour, except that inference is noise-free (deterministic latents and
#: translations scored against the clean input; no measurable effect on the grouping)
DEFAULT = replace(ORIGINAL, noise_at_inference=False)

#: names of the switches (each is also a model hyper-parameter)
SWITCHES = tuple(f.name for f in fields(Deviations))


def resolve(hparams: Mapping[str, Any]) -> Deviations:
    """The switches in effect: explicit values, else ``compat``'s, else mmint's defaults."""
    compat = hparams.get("compat")
    if compat is not None and compat not in COMPATS:
        raise InputError(
            f"unknown compat '{compat}'", "model.compat", f"use null or one of {list(COMPATS)}"
        )
    base = ORIGINAL if compat == "original" else DEFAULT
    values = {}
    for name in SWITCHES:
        given = hparams.get(name)
        values[name] = getattr(base, name) if given is None else given
    if values["gradient_clip_val"] is not None and float(values["gradient_clip_val"]) <= 0:
        values["gradient_clip_val"] = None
    for key, allowed in (("best_head_rule", BEST_HEAD_RULES), ("head_reinit", HEAD_REINITS)):
        if values[key] not in allowed:
            raise InputError(
                f"unknown {key} '{values[key]}'", f"model.{key}", f"use one of {list(allowed)}"
            )
    return Deviations(**values)
