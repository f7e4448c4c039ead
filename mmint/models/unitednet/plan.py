"""UnitedNet as a LightningModule: hyper-parameters, schedules and manual optimization.

Three optimizers, as the reference's schedules but with the discriminator on its own:

- ``pgc`` (prediction / translation / contrastive + generator): encoders, decoders, latent
  projector;
- ``discriminator``: the discriminators, stepped right after each ``pgc`` step;
- ``group``: fusers, projectors and group layers, plus the encoders for classification (and
  for clustering when ``cluster_update_encoders``).

``alternation="epoch"`` replicates the reference: each Lightning epoch is a full pass of the
``pgc`` step, then the group passes (``2 M`` for classification, 1 for clustering). The model
declares :attr:`UnitedNet.train_passes_per_epoch`; the data module's train loader yields that
many reshuffled passes per epoch and tags every batch with its pass index
(``keys.PHASE``), which names the phase of the step. ``alternation="batch"`` alternates both
steps on every batch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import torch
from torch import Tensor

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models.base import Batch, IntegratorModule
from mmint.models.unitednet.compat import resolve as resolve_deviations
from mmint.models.unitednet.config import (
    ALTERNATIONS,
    BATCH_CORRECTIONS,
    GROUP_MODES,
    SELECTION_LOSSES,
    STAGES,
    TASKS,
    Hidden,
    PerModality,
    check_choice,
    default_group_mode,
    default_hidden,
    is_binary,
    per_modality_value,
    per_modality_widths,
    plain,
    resolve_n_groups,
)
from mmint.models.unitednet.heads import HeadSelector
from mmint.models.unitednet.module import FUSERS, LATENT_PROJECTORS, UnitedNetModule
from mmint.nn.batch import BatchAdversary, batch_one_hot


class UnitedNet(IntegratorModule):
    """UnitedNet (Tang et al. 2023): multi-task cross-modal prediction and group identification.

    Parameters
    ----------
    spec
        The data the model is built for.
    task
        ``unsupervised`` (translation + clustering), ``supervised`` (translation +
        classification), ``pgc_only`` (translation only), ``group_only`` (grouping only) or
        ``joint`` (all losses summed, one optimizer).
    alternation
        ``epoch`` (full passes per schedule, as the reference) or ``batch``.
    stage
        ``train``, ``finetune`` (group step first, then translation; selection on
        translation) or ``transfer`` (the training loader also holds the unlabelled target
        cells, label -1; they enter translation and clustering, never cross-entropy).
    n_groups
        Clusters / classes per head. Default: the number of label categories present among
        the training cells (all categories for classification); required without labels.
    group_mode
        ``classification`` or ``clustering``; default from the task (``supervised`` ->
        classification, ``unsupervised`` -> clustering, ``group_only``/``joint`` ->
        classification when the data has labels).
    n_head
        Parallel group heads; the best is chosen on validation losses.
    latent_dim
        Latent width; default 64 when a modality has 1000 or more features, else 32.
    encoder_hidden
        Hidden widths, for all modalities or ``{modality: widths}``; default
        ``[clip(n/2, 32, 512), clip(n/4, 32, 256)]`` from the input width ``n``.
    decoder_hidden
        Default: the encoder's widths reversed.
    discriminator_hidden
        Default ``[64]``.
    activation, latent_activation, latent_norm, batch_norm, layer_norm, decoder_batch_norm, \
dropout, decoder_dropout, discriminator_dropout, dropout_first_only, discriminator_out_dim, \
discriminator_out_norm, fuser, projector_dim, projector_norm, latent_projector, init
        Network options (see :class:`~mmint.models.unitednet.module.UnitedNetModule`); the
        dropouts may be a float or ``{modality: p}`` (``dropout`` is the encoders';
        ``discriminator_dropout`` defaults to it, as in the original's configs).
    noise_level
        Training-only input noise ``x + N(0, s)``, ``s = level * var(x)`` over the batch
        (float or ``{modality: level}``).
    lr, discriminator_lr
        Adam learning rates (the discriminator's defaults to ``lr``).
    reconstruction_weight, translation_weight, contrastive_weight, generator_weight, \
discriminator_weight, ddc_weight, self_entropy_weight, cross_entropy_weight
        Loss weights (defaults: the reference's).
    adversarial
        Use the GAN losses; default: on in the ``train`` stage, off in ``finetune`` and
        ``transfer`` (as the reference).
    temperature, negative_fraction
        Contrastive temperature and negatives per anchor as a fraction of ``M * B``.
    ddc_rel_sigma
        DDC kernel width relative to the median squared distance.
    group_passes
        Group passes per epoch in ``epoch`` alternation; default ``2 M`` for
        classification, 1 for clustering.
    cluster_update_encoders
        Let the clustering losses update the encoders (the reference does not).
    compat
        ``None`` (mmint's defaults) or ``"original"``: the original code's behaviour for every
        deviation switch below left at ``None`` (:mod:`mmint.models.unitednet.compat`).
    contrastive_per_head, ddc_sum_over_heads, shared_discriminator_optimizer, \
gradient_clip_val, best_head_rule, noise_at_inference, head_reinit, constant_discriminator
        One switch per deviation from the original (``None``: follow ``compat``); see
        :class:`~mmint.models.unitednet.compat.Deviations`.
    selection_loss
        The loss logged as ``val/loss``; default: ``translation`` for ``pgc_only`` and the
        ``finetune`` stage, else ``cross_entropy`` (classification) or ``ddc`` (clustering),
        of the best head.
    batch_correction
        ``none`` (the reference), ``covariate`` (every decoder also takes the one-hot batch,
        so the latents need not carry it, and contrastive negatives are drawn from the
        anchor's own batch, so the contrastive loss cannot reward keeping it) or
        ``adversarial`` (``covariate`` plus a batch classifier on each modality's latent that
        the encoders learn to fool, with its own optimizer). Default: ``covariate`` when the
        data has several batches (see docs/unitednet.md for the measurements).
    batch_adversary_weight
        Weight of the encoders' fooling loss (``adversarial``).
    seed
        Seed of the contrastive negative sampling.
    """

    name = "unitednet"

    def __init__(
        self,
        spec: DataSpec | dict,
        task: str = "unsupervised",
        alternation: str = "epoch",
        stage: str = "train",
        n_groups: int | None = None,
        group_mode: str | None = None,
        n_head: int = 1,
        latent_dim: int | None = None,
        encoder_hidden: Hidden = None,
        decoder_hidden: Hidden = None,
        discriminator_hidden: Hidden = None,
        activation: str = "relu",
        latent_activation: str | None = None,
        latent_norm: str | None = "layer",
        batch_norm: bool = False,
        layer_norm: bool = False,
        decoder_batch_norm: bool | None = None,
        dropout: PerModality = 0.0,
        decoder_dropout: PerModality = 0.0,
        discriminator_dropout: PerModality | None = None,
        dropout_first_only: bool = False,
        discriminator_out_dim: int = 1,
        discriminator_out_norm: str | None = None,
        fuser: str = "weighted_mean",
        projector_dim: int = 100,
        projector_norm: bool = True,
        latent_projector: str = "identity",
        noise_level: PerModality = 0.0,
        lr: float = 1e-3,
        discriminator_lr: float | None = None,
        reconstruction_weight: float = 1.0,
        translation_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        generator_weight: float = 0.1,
        discriminator_weight: float = 0.1,
        ddc_weight: float = 0.1,
        self_entropy_weight: float = 0.1,
        cross_entropy_weight: float = 1.0,
        adversarial: bool | None = None,
        temperature: float = 0.1,
        negative_fraction: float = 0.25,
        ddc_rel_sigma: float = 0.15,
        group_passes: int | None = None,
        cluster_update_encoders: bool = False,
        selection_loss: str | None = None,
        init: str = "kaiming_normal",
        batch_correction: str | None = None,
        batch_adversary_weight: float = 1.0,
        compat: str | None = None,
        contrastive_per_head: bool | None = None,
        ddc_sum_over_heads: bool | None = None,
        shared_discriminator_optimizer: bool | None = None,
        gradient_clip_val: float | None = None,
        best_head_rule: str | None = None,
        noise_at_inference: bool | None = None,
        head_reinit: str | None = None,
        constant_discriminator: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(spec)
        spec = self.spec
        check_choice("task", task, TASKS)
        check_choice("alternation", alternation, ALTERNATIONS)
        check_choice("stage", stage, STAGES)
        check_choice("fuser", fuser, FUSERS)
        check_choice("latent_projector", latent_projector, LATENT_PROJECTORS)
        if group_mode is not None:
            check_choice("group_mode", group_mode, GROUP_MODES)
        if selection_loss is not None:
            check_choice("selection_loss", selection_loss, SELECTION_LOSSES)
        if batch_correction is None:
            batch_correction = "covariate" if spec.n_batches > 1 else "none"
        check_choice("batch_correction", batch_correction, BATCH_CORRECTIONS)
        if spec.n_batches < 2:
            batch_correction = "none"  # nothing to correct: the same network as the reference
        if n_head < 1:
            raise InputError(f"n_head={n_head}", "model.n_head", "use at least 1 head")
        mods = list(spec.modalities)
        group_mode = group_mode or default_group_mode(task, spec)
        n_groups = resolve_n_groups(n_groups, task, group_mode, spec)
        latent_dim = latent_dim or (64 if max(spec.n_features.values()) >= 1000 else 32)
        enc = per_modality_widths(
            encoder_hidden, mods, lambda m: default_hidden(spec.n_features[m])
        )
        dec = per_modality_widths(decoder_hidden, mods, lambda m: list(reversed(enc[m])))
        disc = per_modality_widths(discriminator_hidden, mods, lambda m: [64])
        given = dict(locals())
        hp = {k: plain(v) for k, v in given.items() if k in _HPARAMS}
        hp.update(encoder_hidden=enc, decoder_hidden=dec, discriminator_hidden=disc)
        self.save_hyperparameters({"spec": spec.to_dict(), **hp})
        self.deviations = resolve_deviations(hp)
        self.module = UnitedNetModule(
            mods,
            dict(spec.n_features),
            {m: is_binary(spec, m) for m in mods},
            latent_dim,
            enc,
            dec,
            disc,
            n_groups,
            n_head,
            fuser,
            projector_dim,
            projector_norm,
            latent_projector,
            activation,
            latent_activation,
            latent_norm,
            per_modality_value(dropout, mods),
            dropout_first_only,
            batch_norm,
            layer_norm,
            per_modality_value(decoder_dropout, mods),
            None
            if discriminator_dropout is None
            else per_modality_value(discriminator_dropout, mods),
            decoder_batch_norm,
            discriminator_out_dim,
            discriminator_out_norm,
            init,
            spec.n_batches if batch_correction != "none" else 0,
        )
        # outside the module's parameter groups: only its own optimizer steps it
        self.batch_adversary = (
            BatchAdversary(latent_dim, spec.n_batches)
            if batch_correction == "adversarial"
            else None
        )
        seen = torch.tensor(spec.seen_batches(), dtype=torch.bool)
        self.register_buffer("seen_batches", seen, persistent=False)
        weights = spec.class_weights() if spec.train_label_counts else []
        cw = torch.tensor(weights, dtype=torch.float32) if len(weights) == n_groups else None
        self.register_buffer("class_weights", cw, persistent=False)
        self._generator: torch.Generator | None = None
        self.heads = HeadSelector(
            self.module.best_head, self.module.head_votes, self.deviations.best_head_rule
        )
        self._reset_head_stats()

    # --------------------------------------------------------------------- settings
    @property
    def task(self) -> str:
        """Current task."""
        return self.hparams["task"]

    @property
    def stage(self) -> str:
        """Current stage."""
        return self.hparams["stage"]

    @property
    def group_mode(self) -> str:
        """``classification`` or ``clustering``."""
        return self.hparams["group_mode"]

    @property
    def groups_are_labels(self) -> bool:
        """Whether :meth:`predict_groups` returns label codes (classification heads)."""
        return self.group_mode == "classification"

    @property
    def uses_unlabelled_target(self) -> bool:
        """Whether the training loader should also yield the unlabelled target cells."""
        return self.stage == "transfer"

    @property
    def adversarial(self) -> bool:
        """Whether the GAN losses are on in the current stage."""
        adv = self.hparams["adversarial"]
        return (self.stage == "train") if adv is None else bool(adv)

    @property
    def selection_loss(self) -> str:
        """The loss logged as ``val/loss``."""
        chosen = self.hparams["selection_loss"]
        if chosen is not None:
            return chosen
        if self.task == "pgc_only" or self.stage == "finetune":
            return "translation" if len(self.modalities) > 1 else "reconstruction"
        return "cross_entropy" if self.group_mode == "classification" else "ddc"

    @property
    def schedule(self) -> list[str]:
        """Phases of one epoch (``epoch`` alternation) or of one batch (``batch``)."""
        if self.task in ("pgc_only", "joint"):
            return ["pgc" if self.task == "pgc_only" else "joint"]
        passes = self.hparams["group_passes"]
        if passes is None:
            passes = 2 * len(self.modalities) if self.group_mode == "classification" else 1
        if self.hparams["alternation"] == "batch":
            passes = 1
        if self.task == "group_only":
            return ["group"] * passes
        phases = ["pgc"] + ["group"] * passes
        return phases[::-1] if self.stage == "finetune" else phases

    @property
    def train_passes_per_epoch(self) -> int:
        """Passes over the training cells per Lightning epoch (honoured by the data module)."""
        return len(self.schedule) if self.hparams["alternation"] == "epoch" else 1

    def configure_stage(
        self, task: str | None = None, stage: str | None = None, alternation: str | None = None
    ) -> None:
        """Change task, stage or alternation between fits (kept in the hyper-parameters).

        The next ``Trainer.fit`` builds fresh optimizers, as the reference does per stage.
        """
        for key, value, allowed in (
            ("task", task, TASKS),
            ("stage", stage, STAGES),
            ("alternation", alternation, ALTERNATIONS),
        ):
            if value is not None:
                check_choice(key, value, allowed)
                self.hparams[key] = value
        if task is not None:
            mode = default_group_mode(task, self.spec)
            resolve_n_groups(self.module.n_groups, task, mode, self.spec)
            self.hparams["group_mode"] = mode

    def reinit_group_heads(self) -> None:
        """Fresh fusers, projectors, group layers and latent projector (best head 0).

        The second stage of the Patch-seq protocol: cross-modal training first, then
        unsupervised grouping with new heads (the reference's ``init_classify=True``).
        """
        self.module.reset_group_heads(self.deviations.head_reinit)
        self._reset_head_stats()

    @property
    def gan(self) -> bool:
        """Whether this step's GAN losses can have an effect (on, and not a constant critic)."""
        hp = self.hparams
        weighted = hp["generator_weight"] > 0 or hp["discriminator_weight"] > 0
        constant = self.module.constant_discriminator and self.deviations.constant_discriminator
        return self.adversarial and weighted and not constant

    # ------------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """``[pgc, discriminator, group]`` Adam optimizers (``joint``: pgc holds the heads too;
        ``shared_discriminator_optimizer``: pgc holds the discriminators and the second one is
        never stepped), plus the batch adversary's when ``batch_correction="adversarial"``."""
        m, hp = self.module, self.hparams
        with_enc = self.group_mode == "classification" or hp["cluster_update_encoders"]
        pgc = m.pgc_parameters()
        if self.task == "joint":
            pgc = pgc + m.group_parameters(with_encoders=False)
        if self.deviations.shared_discriminator_optimizer:
            pgc = pgc + m.discriminator_parameters()
        opts = [
            torch.optim.Adam(pgc, lr=hp["lr"]),
            torch.optim.Adam(m.discriminator_parameters(), lr=hp["discriminator_lr"] or hp["lr"]),
            torch.optim.Adam(m.group_parameters(with_encoders=with_enc), lr=hp["lr"]),
        ]
        if self.batch_adversary is not None:
            opts.append(torch.optim.Adam(self.batch_adversary.parameters(), lr=hp["lr"]))
        return opts

    def on_fit_start(self) -> None:
        """Seed the contrastive sampling generator on the model's device."""
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(int(self.hparams["seed"]))

    # --------------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """Run the phase(s) of this batch: ``pgc`` (+ discriminator), ``group`` or ``joint``."""
        for phase in self._phases(batch, batch_idx):
            if phase == "pgc":
                self._pgc_step(batch)
            elif phase == "group":
                self._group_step(batch)
            else:
                self._joint_step(batch)

    def _phases(self, batch: Batch, batch_idx: int) -> list[str]:
        schedule = self.schedule
        if self.hparams["alternation"] == "batch":
            return schedule
        if keys.PHASE in batch:  # the data module tags each batch with its pass
            index = int(batch[keys.PHASE])
        else:  # a loader without pass tags: split its batches into equal passes
            n_passes, n_batches = len(schedule), self.trainer.num_training_batches
            if not math.isfinite(n_batches):
                return [p for i, p in enumerate(schedule) if p != schedule[i - 1] or i == 0]
            index = batch_idx // max(1, int(n_batches) // n_passes)
        if index >= len(schedule):
            raise InputError(
                f"a training batch of pass {index} but the schedule has {len(schedule)} passes",
                "train loader",
                "give the model a PairedDataModule (it yields train_passes_per_epoch passes)",
            )
        if index != self._pass:  # a new pass: the previous one's head statistics are complete
            self.heads.end_pass(self._vote_threshold)
            self._pass = index
        return [schedule[index]]

    def _pgc_step(self, batch: Batch) -> None:
        opt, opt_d = self.optimizers()[:2]
        x, masks = self._inputs(batch)
        noised = self._noised(x, masks)
        z = self.module.encode(noised, masks)
        losses, fakes = self._pgc_losses(x, masks, z=z, batch=batch, noised=noised)
        losses.update(self._fool_batch_adversary(z, masks, batch))
        total = self._weighted(losses)
        shared = fakes and self.deviations.shared_discriminator_optimizer
        if shared:  # the original: one backward for translation and discriminator losses
            d_loss = self.module.discriminator_loss(self._targets(x, noised), fakes, masks)
            total = total + self.hparams["discriminator_weight"] * d_loss
        self._step(opt, total)
        self._log_train(losses, x)
        if shared:
            self._log_train({"discriminator": d_loss}, x)
        elif fakes:
            self._discriminator_step(opt_d, self._targets(x, noised), fakes, masks)
        self._batch_adversary_step(z, masks, batch)

    def _fool_batch_adversary(self, z, masks, batch: Batch) -> dict[str, Tensor]:
        """The encoders' loss for fooling the batch adversary (empty without one)."""
        if self.batch_adversary is None:
            return {}
        codes = batch[keys.BATCH]
        terms = [
            self.batch_adversary.loss(z[m][masks[m] > 0], codes[masks[m] > 0], fool=True)
            for m in self.modalities
            if int((masks[m] > 0).sum()) > 1
        ]
        return {"batch_adversary": torch.stack(terms).mean()} if terms else {}

    def _batch_adversary_step(self, z, masks, batch: Batch) -> None:
        """One step of the batch adversary on the detached latents of every modality."""
        if self.batch_adversary is None:
            return
        obs = {m: masks[m] > 0 for m in self.modalities}
        zs = torch.cat([z[m].detach()[obs[m]] for m in self.modalities])
        if zs.shape[0] < 2:
            return
        codes = torch.cat([batch[keys.BATCH][obs[m]] for m in self.modalities])
        loss = self.batch_adversary.loss(zs, codes, fool=False)
        self._step(self.optimizers()[3], loss)
        self._log_train({"batch_classifier": loss}, {self.modalities[0]: zs})

    def _cov(self, batch: Batch | None) -> Tensor | None:
        """The decoders' covariate: one-hot batch codes, or ``None`` (no batch correction)."""
        k = self.module.n_covariates
        return batch_one_hot(batch[keys.BATCH], k, self.seen_batches) if k else None

    def _group_step(self, batch: Batch) -> None:
        opt = self.optimizers()[2]
        x, masks = self._inputs(batch)
        labels = batch.get(keys.LABEL)
        if self.group_mode == "classification" and not bool((labels >= 0).any()):
            return  # nothing labelled in this batch: no step (target cells in transfer)
        update_enc = self.group_mode == "classification" or self.hparams["cluster_update_encoders"]
        with torch.set_grad_enabled(update_enc):
            z = self.module.encode(self._noised(x, masks), masks)
        losses, _ = self._group_losses(z, masks, labels)
        self._step(opt, self._group_total(losses))
        self._track_heads(losses, labels, x, train=True)
        self._log_train({k: v[self.module.best()] for k, v in losses.items()}, x)

    def _joint_step(self, batch: Batch) -> None:
        opt, opt_d = self.optimizers()[:2]
        x, masks = self._inputs(batch)
        labels = batch.get(keys.LABEL)
        noised = self._noised(x, masks)
        z = self.module.encode(noised, masks)
        group, logits = self._group_losses(z, masks, labels)
        groups = logits.detach().argmax(1)
        losses, fakes = self._pgc_losses(x, masks, z=z, groups=groups, batch=batch, noised=noised)
        losses.update(self._fool_batch_adversary(z, masks, batch))
        self._step(opt, self._weighted(losses) + self._group_total(group))
        self._track_heads(group, labels, x, train=True)
        self._log_train({**losses, **{k: v[self.module.best()] for k, v in group.items()}}, x)
        if fakes:
            self._discriminator_step(opt_d, self._targets(x, noised), fakes, masks)
        self._batch_adversary_step(z, masks, batch)

    def _discriminator_step(self, opt, x, fakes, masks) -> None:
        loss = self.module.discriminator_loss(x, fakes, masks)
        self._step(opt, self.hparams["discriminator_weight"] * loss)
        self._log_train({"discriminator": loss}, x)

    def _group_losses(self, z, masks, labels) -> tuple[dict[str, Tensor], Tensor]:
        hp = self.hparams
        return self.module.group_losses(
            z, masks, labels, self.group_mode, self.class_weights, hp["ddc_rel_sigma"]
        )

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
        )

    def _targets(self, x: dict[str, Tensor], noised: dict[str, Tensor]) -> dict[str, Tensor]:
        """What decoders and discriminators compare with: the clean input, or (the original)
        the noised one."""
        return noised if self.deviations.noise_at_inference else x

    def _step(self, opt, loss: Tensor) -> None:
        opt.zero_grad()
        self.manual_backward(loss)
        clip = self.deviations.gradient_clip_val
        if clip:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt.step()

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

    # ------------------------------------------------------------------- validation
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
            group, _ = self._group_losses(z, masks, labels)
            self._track_heads(group, labels, x, train=False)
            losses.update({k: v[self.module.best()] for k, v in group.items()})
        for k, v in losses.items():
            self.log(f"val/{k}", v, on_step=False, on_epoch=True, batch_size=n)

    def on_train_epoch_start(self) -> None:
        """Reset the per-head statistics of the epoch."""
        self._reset_head_stats()

    def on_validation_epoch_start(self) -> None:
        """End the epoch's last training pass (validation runs before the epoch's end hook)
        and reset the validation accumulators."""
        self.heads.end_pass(self._vote_threshold)
        self.heads.val.reset()
        self._val_pgc = {"translation": 0.0, "reconstruction": 0.0, "n": 0}

    def on_validation_epoch_end(self) -> None:
        """Choose the best head and log ``val/loss`` (the best head's selection loss)."""
        if not self.trainer.sanity_checking:
            # the original's validation pass has group losses only when the epoch's last
            # schedule is a group one
            self.heads.end_validation(self._vote_threshold, self.schedule[-1] != "pgc")
        self.log("val/loss", self._selection_value())
        self.log("val/best_head", float(self.module.best()))

    def on_train_epoch_end(self) -> None:
        """End the last pass; without validation, choose from the epoch's training losses."""
        if self._pass < len(self.schedule) - 1 and self.hparams["alternation"] == "epoch":
            raise InputError(
                f"the train loader gave {self._pass + 1} passes but the schedule has "
                f"{len(self.schedule)} ({self.schedule})",
                "train loader",
                "give the model a PairedDataModule (it yields train_passes_per_epoch passes)",
            )
        self.heads.end_pass(self._vote_threshold)
        self.heads.end_epoch()

    @property
    def _vote_threshold(self) -> int:
        return int(self.trainer.max_epochs or 1) // 3

    def _selection_value(self) -> Tensor:
        sel, pgc = self.selection_loss, self._val_pgc
        value = self.heads.selection_loss()
        if sel in ("translation", "reconstruction") or value is None:
            key = sel if sel in ("translation", "reconstruction") else "translation"
            return torch.tensor(pgc[key] / max(pgc["n"], 1))
        return value

    def _track_heads(self, losses: dict[str, Tensor], labels, x, train: bool) -> None:
        if self.group_mode == "classification":
            value, weight = losses["cross_entropy"], float((labels >= 0).sum())
        else:
            value, weight = losses["ddc"], float(x[self.modalities[0]].shape[0])
        self.heads.track(value, weight, train)

    def _reset_head_stats(self) -> None:
        self.heads.reset()
        self._val_pgc = {"translation": 0.0, "reconstruction": 0.0, "n": 0}
        self._pass = 0

    # -------------------------------------------------------------------- interface
    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Encoder output of every modality for every cell."""
        x, masks = self._inputs(batch)
        return self.module.encode(self._noised(x, masks), masks)

    def joint_latent(self, batch: Batch) -> Tensor:
        """The best head's fused latent over the modalities each cell has."""
        x, masks = self._inputs(batch)
        return self.module.joint_latent(self.module.encode(self._noised(x, masks), masks), masks)

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """``D_dst(E_src(x_src))`` in ``dst``'s model-input space (probabilities if binary)."""
        x = _dense(batch[src])
        if self.deviations.noise_at_inference:
            x = self._noised({src: x}, {src: x.new_ones(x.shape[0])})[src]
        z = self.module.encoders[src](x)
        return self.module.decode(z, dst, probabilities=True, cov=self._cov(batch))

    def predict_groups(self, batch: Batch) -> Tensor | None:
        """Best head's group per cell (``None`` for ``pgc_only``: its heads are not trained)."""
        if self.task == "pgc_only":
            return None
        x, masks = self._inputs(batch)
        z = self.module.encode(self._noised(x, masks), masks)
        return self.module.head_outputs(z, masks, [self.module.best()])[0][2].argmax(dim=1)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints from before the best-head votes existed load with no votes."""
        state = checkpoint.get("state_dict", {})
        key = "module.head_votes"
        if key not in state:
            state[key] = torch.zeros(int(self.hparams["n_head"]), dtype=torch.long)

    # ---------------------------------------------------------------------- helpers
    def _inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        x = {m: _dense(batch[m]) for m in self.modalities}
        masks = {}
        for m in self.modalities:
            mk = batch.get(keys.mask_key(m))
            masks[m] = x[m].new_ones(x[m].shape[0]) if mk is None else mk.to(x[m].dtype)
        return x, masks

    def _noised(self, x: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """Input noise ``x + N(0, s)``, ``s = level * var(x)``: in training, and also at
        inference with ``noise_at_inference`` (the original)."""
        if not (self.training or self.deviations.noise_at_inference):
            return x
        level = self.hparams["noise_level"]
        out = {}
        for m, v in x.items():
            lv = float(level.get(m, 0.0) if isinstance(level, Mapping) else level)
            obs = masks[m] > 0
            if lv <= 0 or int(obs.sum()) < 2:
                out[m] = v
                continue
            # the reference's rule: the batch variance is used as the noise's std
            std = lv * v[obs].var()
            out[m] = v + torch.randn_like(v) * std * masks[m][:, None]
        return out

    def _log_train(self, losses: dict[str, Tensor], x: dict[str, Tensor]) -> None:
        n = x[self.modalities[0]].shape[0]
        for k, v in losses.items():
            self.log(f"train/{k}", v.detach(), on_step=False, on_epoch=True, batch_size=n)


#: constructor hyper-parameters other than ``spec`` (all saved in checkpoints)
_HPARAMS = tuple(inspect.signature(UnitedNet.__init__).parameters)[2:]


def _dense(x: Tensor) -> Tensor:
    return x.to_dense() if x.is_sparse else x
