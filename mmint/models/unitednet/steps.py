"""UnitedNet's optimisation steps: translation (pgc) with its discriminators, grouping, joint,
and the batch adversary, as a mixin of the LightningModule (:mod:`.plan`).

Which step runs on which batch is the plan's schedule; what the deviation switches change
here is listed in :mod:`.compat`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmint import keys
from mmint.models.adversary import classifier_loss, fool_loss
from mmint.models.base import Batch
from mmint.models.loss_output import LossOutput, log_terms
from mmint.models.stepping import manual_step, optimizer_params, zero_loss


class UnitedNetSteps:
    """The training steps (manual optimisation with the plan's optimizers)."""

    def _pgc_step(self, batch: Batch) -> None:
        opt, opt_d = self.optimizers()[:2]
        x, masks = self._inputs(batch)
        noised = self._noised(x, masks)
        z = self.module.encode(noised, masks)
        out = self._pgc_loss(x, masks, z, batch, noised)
        fakes, total = out.outputs["fakes"], out.loss
        shared = fakes and self.deviations.shared_discriminator_optimizer
        if shared:  # the original: one backward for translation and discriminator losses
            d_loss = self.module.discriminator_loss(self._targets(x, noised), fakes, masks)
            total = total + self.hparams["discriminator_weight"] * d_loss
        if self.balancers is None:
            self._step(opt, total)
        else:
            d_weighted = self.hparams["discriminator_weight"] * d_loss if shared else None
            self._balanced("pgc", opt, out.terms, d_weighted)
        self._log_train(out.terms, x)
        if shared:
            self._log_train({"discriminator": d_loss}, x)
        elif fakes:
            self._discriminator_step(opt_d, self._targets(x, noised), fakes, masks)
        self._batch_adversary_step(z, masks, batch)

    def _fool_batch_adversary(self, z, masks, batch: Batch) -> dict[str, Tensor]:
        """The encoders' loss for fooling the batch adversary (empty without one)."""
        if self.batch_adversary is None:
            return {}
        loss = fool_loss(self.batch_adversary, z, batch[keys.BATCH], masks)
        return {} if loss is None else {"batch_adversary": loss}

    def _batch_adversary_step(self, z, masks, batch: Batch) -> None:
        """One step of the batch adversary on the detached latents of every modality."""
        if self.batch_adversary is None:
            return
        opt = self.optimizers()[3]
        z = {m: z[m] for m in self.modalities}
        loss = classifier_loss(self.batch_adversary, z, batch[keys.BATCH], masks)
        if loss is None:
            self._zero_step(opt)
            return
        self._step(opt, loss)
        n = int(sum(int((masks[m] > 0).sum()) for m in self.modalities))
        log_terms(self, "train", {"batch_classifier": loss}, n)

    def _group_step(self, batch: Batch) -> None:
        opt = self.optimizers()[2]
        x, masks = self._inputs(batch)
        labels = batch.get(keys.LABEL)
        if self.group_mode == "classification" and not bool((labels >= 0).any()):
            # nothing labelled in this batch (target cells in transfer): no step, except that
            # under DDP every process must take part in every gradient all-reduce
            self._zero_step(opt)
            return
        update_enc = self.group_mode == "classification" or self.hparams["cluster_update_encoders"]
        with torch.set_grad_enabled(update_enc):
            z = self.module.encode(self._noised(x, masks), masks)
        out = self._group_loss(z, masks, labels)
        if self.balancers is None:
            self._step(opt, out.loss)
        else:
            self._balanced("group", opt, out.terms)
        self.module.normalize_heads()
        self._track_heads(out.terms, labels, x, train=True)
        self._log_train(self._best_head_terms(out), x)

    def _joint_step(self, batch: Batch) -> None:
        opt, opt_d = self.optimizers()[:2]
        x, masks = self._inputs(batch)
        labels = batch.get(keys.LABEL)
        noised = self._noised(x, masks)
        z = self.module.encode(noised, masks)
        group = self._group_loss(z, masks, labels)
        groups = group.outputs["logits"].detach().argmax(1)
        out = self._pgc_loss(x, masks, z, batch, noised, groups)
        fakes = out.outputs["fakes"]
        if self.balancers is None:
            self._step(opt, out.loss + group.loss)
        else:
            self._balanced("joint", opt, {**out.terms, **group.terms})
        self.module.normalize_heads()
        self._track_heads(group.terms, labels, x, train=True)
        self._log_train({**out.terms, **self._best_head_terms(group)}, x)
        if fakes:
            self._discriminator_step(opt_d, self._targets(x, noised), fakes, masks)
        self._batch_adversary_step(z, masks, batch)

    def _discriminator_step(self, opt, x, fakes, masks) -> None:
        loss = self.module.discriminator_loss(x, fakes, masks)
        self._step(opt, self.hparams["discriminator_weight"] * loss)
        self._log_train({"discriminator": loss}, x)

    def _group_loss(self, z, masks, labels) -> LossOutput:
        """The group step's loss; its terms are the per-head losses ``(H,)``,
        ``outputs["logits"]`` the best head's logits."""
        per_head, logits = self.module.group_losses(
            z, masks, labels, self.group_mode, self.class_weights, self.hparams["ddc_rel_sigma"]
        )
        return LossOutput(self._group_total(per_head), per_head, outputs={"logits": logits})

    def _best_head_terms(self, out: LossOutput) -> dict[str, Tensor]:
        return {k: v[self.module.best()] for k, v in out.terms.items()}

    def _pgc_loss(self, x, masks, z, batch: Batch, noised, groups=None) -> LossOutput:
        """The translation step's weighted loss (with the batch adversary's fooling term);
        ``outputs["fakes"]``: the discriminator step's detached reconstructions."""
        terms, fakes = self._pgc_losses(x, masks, z=z, groups=groups, batch=batch, noised=noised)
        terms.update(self._fool_batch_adversary(z, masks, batch))
        if self.module.variational is not None and self.module.last_kl is not None:
            terms["kl"] = self.module.last_kl  # of the encode that made z
        return LossOutput(self._weighted(terms), terms, outputs={"fakes": fakes})

    def _pgc_losses(self, x, masks, z, groups=None, batch: Batch | None = None, noised=None):
        """Unweighted translation-step losses of the latents ``z`` of the inputs ``x``."""
        hp = self.hparams
        correct = batch is not None and self.module.n_covariates > 0
        return self.module.pgc_losses(
            x,
            self._targets(x, x if noised is None else noised),
            masks,
            translation=hp["translation_weight"] > 0,
            contrastive=hp["contrastive_weight"] > 0,
            adversarial=self.gan,
            temperature=hp["temperature"],
            negative_fraction=hp["negative_fraction"],
            generator=self._generator,
            z=z,
            groups=groups,
            cov=self._cov(batch) if correct else None,
            strata=batch[keys.BATCH] if correct else None,
            train_discriminators=self.deviations.shared_discriminator_optimizer,
        )

    def _targets(self, x: dict[str, Tensor], noised: dict[str, Tensor]) -> dict[str, Tensor]:
        """What decoders and discriminators compare with: the clean input, or (the original)
        the noised one."""
        return noised if self.deviations.noise_at_inference else x

    def _zero_step(self, opt) -> None:
        """Under DDP, a step with a zero loss in place of a skipped one (every process must
        join every gradient all-reduce); nothing otherwise."""
        loss = zero_loss(self, optimizer_params(opt))
        if loss is not None:
            self._step(opt, loss)

    def _step(self, opt, loss: Tensor) -> None:
        manual_step(self, opt, loss, self.deviations.gradient_clip_val)

    def _weighted(self, losses: dict[str, Tensor]) -> Tensor:
        weights = {k: self.hparams[f"{k}_weight"] for k in losses}
        if "contrastive" in weights and self.deviations.contrastive_per_head:
            weights["contrastive"] /= self.hparams["n_head"]
        return sum(weights[k] * v for k, v in losses.items())

    def _group_total(self, losses: dict[str, Tensor]) -> Tensor:
        # mean over heads: each head's loss is that of a one-head model; the original sums
        # DDC over heads instead (ddc_sum_over_heads)
        n_head = self.hparams["n_head"] if self.deviations.ddc_sum_over_heads else 1
        return sum(
            self.hparams[f"{k}_weight"] * v * (n_head if k == "ddc" else 1)
            for k, v in losses.items()
        ).mean()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Log every loss on validation cells and accumulate per-head selection losses."""
        x, masks = self._inputs(batch)
        labels = batch.get(keys.LABEL)
        noised = self._noised(x, masks)
        z = self.module.encode(noised, masks)
        losses, _ = self.module.pgc_losses(
            noised,
            self._targets(x, noised),
            masks,
            contrastive=False,
            adversarial=False,
            z=z,
            cov=self._cov(batch),
        )
        n = x[self.modalities[0]].shape[0]
        self._val_pgc["translation"] += (
            float(losses.get("translation", losses["reconstruction"])) * n
        )
        self._val_pgc["reconstruction"] += float(losses["reconstruction"]) * n
        self._val_pgc["n"] += n
        if self.task != "pgc_only":
            group = self._group_loss(z, masks, labels)
            self._track_heads(group.terms, labels, x, train=False)
            losses.update(self._best_head_terms(group))
        # val/loss is the best head's selection loss, logged at the epoch's end
        log_terms(self, "val", losses, n)

    def _log_train(self, losses: dict[str, Tensor], x: dict[str, Tensor]) -> None:
        n = x[self.modalities[0]].shape[0]
        log_terms(self, "train", losses, n)
