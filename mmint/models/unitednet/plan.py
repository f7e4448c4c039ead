"""UnitedNet as a LightningModule: hyper-parameters, schedules and manual optimization.

Three optimizers, as the reference's schedules but with the discriminator on its own:

- ``pgc`` (prediction / translation / contrastive + generator): encoders, decoders, latent
  projector;
- ``discriminator``: the discriminators, stepped right after each ``pgc`` step;
- ``group``: fusers, projectors and group layers, plus the encoders for classification (and
  for clustering when ``cluster_update_encoders``).

``alternation="epoch"`` replicates the reference: each Lightning epoch is a full pass of the
``pgc`` step, then the group passes (``2 M`` for classification, 1 for clustering). The data
module honours :attr:`UnitedNet.train_passes_per_epoch` by yielding that many reshuffled
passes per epoch. ``alternation="batch"`` alternates both steps on every batch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models.base import Batch, IntegratorModule
from mmint.models.unitednet.module import FUSERS, LATENT_PROJECTORS, UnitedNetModule
from mmint.nn.batch import BatchAdversary, batch_one_hot

TASKS = ("unsupervised", "supervised", "pgc_only", "group_only", "joint")
ALTERNATIONS = ("epoch", "batch")
STAGES = ("train", "finetune", "transfer")
GROUP_MODES = ("classification", "clustering")
SELECTION_LOSSES = ("translation", "reconstruction", "cross_entropy", "ddc")
BATCH_CORRECTIONS = ("none", "covariate", "adversarial")

Hidden = Sequence[int] | Mapping[str, Sequence[int]] | None


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
    activation, latent_activation, latent_norm, batch_norm, layer_norm, dropout, \
dropout_first_only, discriminator_out_dim, discriminator_out_norm, fuser, projector_dim, \
projector_norm, latent_projector, init
        Network options (see :class:`~mmint.models.unitednet.module.UnitedNetModule`);
        ``dropout`` may be a float or ``{modality: p}``.
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
    gradient_clip_val
        Gradient-norm clip of every step (``None`` or 0: off).
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
        dropout: float | Mapping[str, float] = 0.0,
        dropout_first_only: bool = False,
        discriminator_out_dim: int = 1,
        discriminator_out_norm: str | None = None,
        fuser: str = "weighted_mean",
        projector_dim: int = 100,
        projector_norm: bool = True,
        latent_projector: str = "identity",
        noise_level: float | Mapping[str, float] = 0.0,
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
        gradient_clip_val: float | None = 25.0,
        selection_loss: str | None = None,
        init: str = "kaiming_normal",
        batch_correction: str | None = None,
        batch_adversary_weight: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(spec)
        spec = self.spec
        _choice("task", task, TASKS)
        _choice("alternation", alternation, ALTERNATIONS)
        _choice("stage", stage, STAGES)
        _choice("fuser", fuser, FUSERS)
        _choice("latent_projector", latent_projector, LATENT_PROJECTORS)
        if group_mode is not None:
            _choice("group_mode", group_mode, GROUP_MODES)
        if selection_loss is not None:
            _choice("selection_loss", selection_loss, SELECTION_LOSSES)
        if batch_correction is None:
            batch_correction = "covariate" if spec.n_batches > 1 else "none"
        _choice("batch_correction", batch_correction, BATCH_CORRECTIONS)
        if spec.n_batches < 2:
            batch_correction = "none"  # nothing to correct: the same network as the reference
        if n_head < 1:
            raise InputError(f"n_head={n_head}", "model.n_head", "use at least 1 head")
        mods = list(spec.modalities)
        group_mode = group_mode or _default_group_mode(task, spec)
        n_groups = _resolve_n_groups(n_groups, task, group_mode, spec)
        latent_dim = latent_dim or (64 if max(spec.n_features.values()) >= 1000 else 32)
        enc = _per_modality(encoder_hidden, mods, lambda m: _default_hidden(spec.n_features[m]))
        dec = _per_modality(decoder_hidden, mods, lambda m: list(reversed(enc[m])))
        disc = _per_modality(discriminator_hidden, mods, lambda m: [64])
        given = dict(locals())
        hp = {k: _plain(v) for k, v in given.items() if k in _HPARAMS}
        hp.update(encoder_hidden=enc, decoder_hidden=dec, discriminator_hidden=disc)
        self.save_hyperparameters({"spec": spec.to_dict(), **hp})
        self.module = UnitedNetModule(
            mods,
            dict(spec.n_features),
            {m: _is_binary(spec, m) for m in mods},
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
            _per_modality_value(dropout, mods),
            dropout_first_only,
            batch_norm,
            layer_norm,
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
                _choice(key, value, allowed)
                self.hparams[key] = value
        if task is not None:
            mode = _default_group_mode(task, self.spec)
            _resolve_n_groups(self.module.n_groups, task, mode, self.spec)
            self.hparams["group_mode"] = mode

    def reinit_group_heads(self) -> None:
        """Fresh fusers, projectors, group layers and latent projector (best head 0).

        The second stage of the Patch-seq protocol: cross-modal training first, then
        unsupervised grouping with new heads (the reference's ``init_classify=True``).
        """
        self.module.reset_group_heads()
        self._reset_head_stats()

    # ------------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """``[pgc, discriminator, group]`` Adam optimizers (``joint``: pgc holds all), plus the
        batch adversary's when ``batch_correction="adversarial"``."""
        m, hp = self.module, self.hparams
        with_enc = self.group_mode == "classification" or hp["cluster_update_encoders"]
        pgc = m.pgc_parameters()
        if self.task == "joint":
            pgc = pgc + m.group_parameters(with_encoders=False)
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
        for phase in self._phases(batch_idx):
            if phase == "pgc":
                self._pgc_step(batch)
            elif phase == "group":
                self._group_step(batch)
            else:
                self._joint_step(batch)

    def _phases(self, batch_idx: int) -> list[str]:
        schedule = self.schedule
        if self.hparams["alternation"] == "batch":
            return schedule
        n_passes, n_batches = len(schedule), self.trainer.num_training_batches
        if not math.isfinite(n_batches):  # a loader without a length: alternate per batch
            return [p for i, p in enumerate(schedule) if p != schedule[i - 1] or i == 0]
        per_pass = max(1, int(n_batches) // n_passes)
        return [schedule[min(batch_idx // per_pass, n_passes - 1)]]

    def _pgc_step(self, batch: Batch) -> None:
        opt, opt_d = self.optimizers()[:2]
        x, masks = self._inputs(batch)
        z = self.module.encode(self._noised(x, masks), masks)
        losses, fakes = self._pgc_losses(x, masks, z=z, batch=batch)
        losses.update(self._fool_batch_adversary(z, masks, batch))
        total = self._weighted(losses)
        self._step(opt, total)
        self._log_train(losses, x)
        if fakes:
            self._discriminator_step(opt_d, x, fakes, masks)
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
        losses, _ = self.module.group_losses(
            z, masks, labels, self.group_mode, self.class_weights, self.hparams["ddc_rel_sigma"]
        )
        self._step(opt, self._group_total(losses))
        self._track_heads(losses, labels, x, train=True)
        self._log_train({k: v[self.module.best()] for k, v in losses.items()}, x)

    def _joint_step(self, batch: Batch) -> None:
        opt, opt_d = self.optimizers()[:2]
        x, masks = self._inputs(batch)
        labels = batch.get(keys.LABEL)
        z = self.module.encode(self._noised(x, masks), masks)
        group, logits = self.module.group_losses(
            z, masks, labels, self.group_mode, self.class_weights, self.hparams["ddc_rel_sigma"]
        )
        groups = logits.detach().argmax(1)
        losses, fakes = self._pgc_losses(x, masks, z=z, groups=groups, batch=batch)
        losses.update(self._fool_batch_adversary(z, masks, batch))
        self._step(opt, self._weighted(losses) + self._group_total(group))
        self._track_heads(group, labels, x, train=True)
        self._log_train({**losses, **{k: v[self.module.best()] for k, v in group.items()}}, x)
        if fakes:
            self._discriminator_step(opt_d, x, fakes, masks)
        self._batch_adversary_step(z, masks, batch)

    def _discriminator_step(self, opt, x, fakes, masks) -> None:
        loss = self.module.discriminator_loss(x, fakes, masks)
        self._step(opt, self.hparams["discriminator_weight"] * loss)
        self._log_train({"discriminator": loss}, x)

    def _pgc_losses(self, x, masks, z=None, groups=None, batch: Batch | None = None):
        hp = self.hparams
        correct = batch is not None and self.module.n_covariates > 0
        return self.module.pgc_losses(
            self._noised(x, masks) if z is None else x,
            x,
            masks,
            translation=hp["translation_weight"] > 0,
            contrastive=hp["contrastive_weight"] > 0,
            adversarial=self.adversarial
            and (hp["generator_weight"] > 0 or hp["discriminator_weight"] > 0),
            temperature=hp["temperature"],
            negative_fraction=hp["negative_fraction"],
            generator=self._generator,
            z=z,
            groups=groups,
            cov=self._cov(batch) if correct else None,
            strata=batch[keys.BATCH] if correct else None,
        )

    def _step(self, opt, loss: Tensor) -> None:
        opt.zero_grad()
        self.manual_backward(loss)
        clip = self.hparams["gradient_clip_val"]
        if clip:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt.step()

    def _weighted(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(self.hparams[f"{k}_weight"] * v for k, v in losses.items())

    def _group_total(self, losses: dict[str, Tensor]) -> Tensor:
        # mean over heads: each head's loss is that of a one-head model (see docs: deviations)
        return sum(self.hparams[f"{k}_weight"] * v for k, v in losses.items()).mean()

    # ------------------------------------------------------------------- validation
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Log every loss on validation cells and accumulate per-head selection losses."""
        x, masks = self._inputs(batch)
        labels = batch.get(keys.LABEL)
        z = self.module.encode(x, masks)
        losses, _ = self.module.pgc_losses(
            x, x, masks, contrastive=False, adversarial=False, z=z, cov=self._cov(batch)
        )
        n = x[self.modalities[0]].shape[0]
        self._val_pgc["translation"] += (
            float(losses.get("translation", losses["reconstruction"])) * n
        )
        self._val_pgc["reconstruction"] += float(losses["reconstruction"]) * n
        self._val_pgc["n"] += n
        if self.task != "pgc_only":
            group, _ = self.module.group_losses(
                z, masks, labels, self.group_mode, self.class_weights, self.hparams["ddc_rel_sigma"]
            )
            self._track_heads(group, labels, x, train=False)
            losses.update({k: v[self.module.best()] for k, v in group.items()})
        for k, v in losses.items():
            self.log(f"val/{k}", v, on_step=False, on_epoch=True, batch_size=n)

    def on_train_epoch_start(self) -> None:
        """Reset the per-head statistics of the epoch."""
        self._reset_head_stats()

    def on_validation_epoch_start(self) -> None:
        """Reset validation accumulators."""
        self._val_heads = None
        self._val_pgc = {"translation": 0.0, "reconstruction": 0.0, "n": 0}

    def on_validation_epoch_end(self) -> None:
        """Choose the best head (argmin of its selection loss, ties -> lowest) and log ``val/loss``."""
        if self._val_heads is not None and not self.trainer.sanity_checking:
            self._choose_best(self._val_heads)
            self._val_chosen = True
        self.log("val/loss", self._selection_value())
        self.log("val/best_head", float(self.module.best()))

    def on_train_epoch_end(self) -> None:
        """Without validation, choose the best head from the training losses of the epoch."""
        if not self._val_chosen and self._train_heads is not None:
            self._choose_best(self._train_heads)

    def _selection_value(self) -> Tensor:
        sel, pgc = self.selection_loss, self._val_pgc
        if sel in ("translation", "reconstruction") or self._val_heads is None:
            key = sel if sel in ("translation", "reconstruction") else "translation"
            return torch.tensor(pgc[key] / max(pgc["n"], 1))
        sums, weights = self._val_heads
        means = sums / weights.clamp_min(1e-12)
        return means[self.module.best()]

    def _track_heads(self, losses: dict[str, Tensor], labels, x, train: bool) -> None:
        if self.group_mode == "classification":
            value, weight = losses["cross_entropy"], float((labels >= 0).sum())
        else:
            value, weight = losses["ddc"], float(x[self.modalities[0]].shape[0])
        stats = self._train_heads if train else self._val_heads
        value = value.detach().cpu() * weight
        w = torch.full_like(value, weight)
        stats = (value, w) if stats is None else (stats[0] + value, stats[1] + w)
        if train:
            self._train_heads = stats
        else:
            self._val_heads = stats

    def _choose_best(self, stats: tuple[Tensor, Tensor]) -> None:
        sums, weights = stats
        if float(weights.max()) <= 0:
            return
        # torch.argmin returns the first minimum: ties go to the lowest head index
        self.module.best_head.fill_(int(torch.argmin(sums / weights.clamp_min(1e-12))))

    def _reset_head_stats(self) -> None:
        self._train_heads: tuple[Tensor, Tensor] | None = None
        self._val_heads: tuple[Tensor, Tensor] | None = None
        self._val_pgc = {"translation": 0.0, "reconstruction": 0.0, "n": 0}
        self._val_chosen = False

    # -------------------------------------------------------------------- interface
    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Encoder output of every modality for every cell."""
        x, masks = self._inputs(batch)
        return self.module.encode(x, masks)

    def joint_latent(self, batch: Batch) -> Tensor:
        """The best head's fused latent over the modalities each cell has."""
        x, masks = self._inputs(batch)
        return self.module.joint_latent(self.module.encode(x, masks), masks)

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """``D_dst(E_src(x_src))`` in ``dst``'s model-input space (probabilities if binary)."""
        x = _dense(batch[src])
        z = self.module.encoders[src](x)
        return self.module.decode(z, dst, probabilities=True, cov=self._cov(batch))

    def predict_groups(self, batch: Batch) -> Tensor | None:
        """Best head's group per cell (``None`` for ``pgc_only``: its heads are not trained)."""
        if self.task == "pgc_only":
            return None
        x, masks = self._inputs(batch)
        z = self.module.encode(x, masks)
        return self.module.head_outputs(z, masks, [self.module.best()])[0][2].argmax(dim=1)

    # ---------------------------------------------------------------------- helpers
    def _inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        x = {m: _dense(batch[m]) for m in self.modalities}
        masks = {}
        for m in self.modalities:
            mk = batch.get(keys.mask_key(m))
            masks[m] = x[m].new_ones(x[m].shape[0]) if mk is None else mk.to(x[m].dtype)
        return x, masks

    def _noised(self, x: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """Training-only input noise (the reference also added it at inference)."""
        if not self.training:
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


# ------------------------------------------------------------------------- helpers
#: constructor hyper-parameters other than ``spec`` (all saved in checkpoints)
_HPARAMS = tuple(inspect.signature(UnitedNet.__init__).parameters)[2:]


def _choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InputError(f"unknown {key} '{value}'", f"model.{key}", f"use one of {list(allowed)}")


def _default_group_mode(task: str, spec: DataSpec) -> str:
    if task == "supervised":
        return "classification"
    if task in ("group_only", "joint") and spec.n_labels > 0:
        return "classification"
    return "clustering"


def _resolve_n_groups(n_groups: int | None, task: str, mode: str, spec: DataSpec) -> int:
    if mode == "classification":
        if spec.n_labels == 0:
            raise InputError(
                f"task={task} classifies cells but the data has no labels",
                "model.task",
                "give the data a label_key, or use task=unsupervised with model.n_groups",
            )
        if n_groups not in (None, spec.n_labels):
            raise InputError(
                f"n_groups={n_groups} but the data has {spec.n_labels} label categories",
                "model.n_groups",
                "leave model.n_groups unset for classification",
            )
        return spec.n_labels
    if n_groups is None:
        counts = spec.train_label_counts
        n_groups = sum(c > 0 for c in counts) if counts else spec.n_labels
    if not n_groups:
        if task == "pgc_only":
            return 2  # heads exist but are not trained in pgc_only
        raise InputError(
            "the number of groups is unknown: the data has no labels",
            "model.n_groups",
            "set model.n_groups=<number of clusters>",
        )
    if n_groups < 2:
        raise InputError(f"n_groups={n_groups}", "model.n_groups", "use at least 2 groups")
    return int(n_groups)


def _default_hidden(n_in: int) -> list[int]:
    return [min(512, max(32, n_in // 2)), min(256, max(32, n_in // 4))]


def _per_modality(value: Hidden, mods: list[str], default) -> dict[str, list[int]]:
    if value is None:
        return {m: list(default(m)) for m in mods}
    if isinstance(value, Mapping):
        return {m: [int(w) for w in value[m]] if m in value else list(default(m)) for m in mods}
    return {m: [int(w) for w in value] for m in mods}


def _per_modality_value(value: float | Mapping[str, float], mods: list[str]) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {m: float(value.get(m, 0.0)) for m in mods}
    return {m: float(value) for m in mods}


def _is_binary(spec: DataSpec, m: str) -> bool:
    transform = spec.transforms.get(m, "binarize" if spec.kinds[m] == "binary" else "none")
    return transform == "binarize" or (spec.kinds[m] == "binary" and transform == "none")


def _plain(value: Any) -> Any:
    """Hydra containers -> plain dicts and lists (for clean hyper-parameters)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _dense(x: Tensor) -> Tensor:
    return x.to_dense() if x.is_sparse else x
