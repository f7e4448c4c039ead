"""UnitedNet's loss balancing (``model.loss_balancing``), as a mixin of the LightningModule.

One balancer (:mod:`mmint.nn.balancing`) per phase of the schedule (``pgc``, ``group``,
``joint``), over the terms that phase's optimizer minimises, each already multiplied by its
fixed weight (``<term>_weight``): a learned method starts from today's weights and multiplies
them (effective weight = fixed weight x the balancer's). ``fixed`` builds no balancer, and the
steps keep their plain weighted sum (the same arithmetic as before balancing existed).

- ``pgc`` (encoders, decoders, latent projector): reconstruction, translation, contrastive,
  generator, the batch adversary's fooling term and the KL term of a variational latent.
  When one optimizer also steps the discriminators (``shared_discriminator_optimizer``, the
  original's and mmint's default), their loss joins the same step with its fixed weight,
  outside the balancer: it is the adversary's objective, not a task (PCGrad would otherwise
  project the generator's and the discriminator's opposed gradients off each other).
- ``group`` (heads, plus the encoders when they learn from grouping): cross-entropy, or DDC
  and self-entropy, each the mean over heads.
- ``joint`` (one optimizer): the pgc terms and the group terms.

The discriminator's and the batch adversary's own steps are single-loss adversaries and are
not balanced. The balancers are rebuilt when :meth:`configure_stage` changes the schedule (a
new fit stage gets fresh balancers, as it gets fresh optimizers).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from mmint.errors import InputError
from mmint.models.stepping import balanced_step
from mmint.nn.balancing import make_balancer

PGC_TERMS = (
    "reconstruction",
    "translation",
    "contrastive",
    "generator",
    "batch_adversary",
    "kl",
)


class UnitedNetBalancing:
    """Builds the balancers, steps through them and reports their effective weights."""

    balancers: nn.ModuleDict | None

    def _build_balancers(self) -> None:
        """One balancer per phase of the current schedule (``None`` for ``fixed``)."""
        method = self.hparams["loss_balancing"]  # checked by resolve_hparams
        if method == "fixed":
            self.balancers = None
            return
        options = dict(self.hparams["balancing_options"] or {})
        balancers = {}
        for phase in dict.fromkeys(self.schedule):
            try:
                balancers[phase] = make_balancer(
                    method, self._phase_terms(phase), self._shared_parameters(phase), **options
                )
            except TypeError as err:
                raise InputError(
                    f"balancing_options {sorted(options)} do not fit {method} ({err})",
                    "model.balancing_options",
                    "give lr (uncertainty, gradnorm), alpha (gradnorm) or temperature (dwa)",
                ) from None
        self.balancers = nn.ModuleDict(balancers)

    def _phase_terms(self, phase: str) -> list[str]:
        """The loss terms of ``phase``'s optimizer that this model can form."""
        hp, multi = self.hparams, len(self.modalities) > 1
        pgc = {
            "reconstruction": True,
            "translation": multi and hp["translation_weight"] > 0,
            "contrastive": multi and hp["contrastive_weight"] > 0,
            "generator": self.gan,
            "batch_adversary": self.batch_adversary is not None,
            "kl": bool(hp["variational"]),
        }
        group = (
            ["cross_entropy"] if self.group_mode == "classification" else ["ddc", "self_entropy"]
        )
        pgc_terms = [k for k in PGC_TERMS if pgc[k]]
        return {"pgc": pgc_terms, "group": group, "joint": pgc_terms + group}[phase]

    def _shared_parameters(self, phase: str) -> list[nn.Parameter]:
        """GradNorm's shared layer: every encoder's output layer when the phase trains the
        encoders, else the heads' projector layers."""
        trains_encoders = phase != "group" or (
            self.group_mode == "classification" or self.hparams["cluster_update_encoders"]
        )
        if trains_encoders:
            layers = [_last_linear(e) for e in self.module.encoders.values()]
        else:
            layers = [head.projector[0] for head in self.module.heads]
        return [p for layer in layers for p in layer.parameters()]

    def _fixed_weight(self, term: str) -> float:
        """The fixed weight a term is multiplied by in the steps' weighted sums."""
        hp = self.hparams
        weight = float(hp[f"{term}_weight"])
        if term == "contrastive" and self.deviations.contrastive_per_head:
            weight /= hp["n_head"]
        if term == "ddc" and self.deviations.ddc_sum_over_heads:
            weight *= hp["n_head"]
        return weight

    def _weighted_terms(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each term times its fixed weight, per-head terms averaged over heads.

        Self-entropy (``sum_c pbar_c log pbar_c``, down to ``-log K``) is shifted by
        ``log K`` to the KL of the mean assignment from the uniform: the same gradients, but
        non-negative, as the learned methods assume (loss ratios, log-variances).
        """
        shift = {"self_entropy": math.log(self.module.n_groups)}
        return {
            k: (self._fixed_weight(k) * (v + shift.get(k, 0.0))).mean() for k, v in terms.items()
        }

    def _balanced(
        self, phase: str, opt, terms: dict[str, Tensor], unbalanced: Tensor | None = None
    ) -> None:
        """One step of ``opt`` on the (unweighted) ``terms`` through ``phase``'s balancer,
        plus the already weighted ``unbalanced`` loss."""
        balanced_step(
            self,
            opt,
            self.balancers[phase],
            self._weighted_terms(terms),
            self.deviations.gradient_clip_val,
            unbalanced,
        )

    def epoch_values(self) -> dict[str, float]:
        """Effective weight of each balanced term, ``weight_<phase>_<term>`` (fixed weight x
        the balancer's); empty for ``fixed``. Recorded per epoch into ``curves.csv``."""
        if self.balancers is None:
            return {}
        return {
            f"weight_{phase}_{term}": self._fixed_weight(term) * w
            for phase, bal in self.balancers.items()
            for term, w in bal.weights().items()
        }

    def _end_balancing_epoch(self) -> None:
        """Log the effective weights of the epoch, then let each balancer end it (DWA's new
        weights)."""
        if self.balancers is None:
            return
        for name, value in self.epoch_values().items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True)
        for bal in self.balancers.values():
            bal.end_epoch()


def _last_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
