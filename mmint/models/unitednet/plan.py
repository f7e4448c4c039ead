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

import math

import torch
from torch import Tensor

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models.base import Batch, IntegratorModule
from mmint.models.hparams import constructor_args, save_hparams
from mmint.models.unitednet.api import UnitedNetAPI
from mmint.models.unitednet.balance import UnitedNetBalancing
from mmint.models.unitednet.compat import resolve as resolve_deviations
from mmint.models.unitednet.config import (
    ALTERNATIONS,
    STAGES,
    TASKS,
    Hidden,
    Networks,
    PerModality,
    check_choice,
    default_group_mode,
    resolve_hparams,
    resolve_n_groups,
)
from mmint.models.unitednet.heads import HeadSelector
from mmint.models.unitednet.module import UnitedNetModule
from mmint.models.unitednet.steps import UnitedNetSteps
from mmint.nn.batch import BatchAdversary
from mmint.nn.optim import adam


class UnitedNet(UnitedNetAPI, UnitedNetSteps, UnitedNetBalancing, IntegratorModule):
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
    n_head, latent_dim, encoder_hidden, decoder_hidden, discriminator_hidden, activation, \
latent_activation, latent_norm, batch_norm, layer_norm, decoder_batch_norm, dropout, \
decoder_dropout, discriminator_dropout, dropout_first_only, discriminator_out_dim, \
discriminator_out_norm, fuser, projector_dim, projector_norm, latent_projector, init
        The networks (see :class:`~mmint.models.unitednet.config.Networks`). Defaults: one
        head; latent 64 when a modality has 1000 or more features, else 32; encoder widths
        ``[clip(n/2, 32, 512), clip(n/4, 32, 256)]`` for ``n`` inputs (or a list, or
        ``{modality: widths}``), decoders the encoders' reversed, discriminators ``[64]``;
        dropouts a float or ``{modality: p}`` (``discriminator_dropout`` defaults to the
        encoders', as in the original's configs).
    noise_level
        Input noise ``x + N(0, s)``, ``s = level * var(x)`` over the batch (float or
        ``{modality: level}``), in training (and at inference with ``noise_at_inference``).
    lr, discriminator_lr, reconstruction_weight, translation_weight, contrastive_weight, \
generator_weight, discriminator_weight, ddc_weight, self_entropy_weight, cross_entropy_weight
        Adam learning rates (the discriminator's defaults to ``lr``) and loss weights
        (defaults: the reference's).
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
    encoder, variational, kl_weight, loss_balancing, balancing_options
        Encoder options and each optimizer's loss balancing: docs/unitednet.md, :mod:`.balance`.
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
        encoder: str = "mlp",
        variational: bool = False,
        kl_weight: float = 0.01,
        loss_balancing: str = "fixed",
        balancing_options: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(spec)
        spec = self.spec
        hp = resolve_hparams(constructor_args(UnitedNet, locals()), spec)
        save_hparams(self, hp)
        self.deviations = resolve_deviations(hp)
        correct = hp["batch_correction"] != "none"
        self.module = UnitedNetModule(
            Networks.resolve(hp, spec, n_covariates=spec.n_batches if correct else 0)
        )
        # outside the module's parameter groups: only its own optimizer steps it
        self.batch_adversary = (
            BatchAdversary(hp["latent_dim"], spec.n_batches)
            if hp["batch_correction"] == "adversarial"
            else None
        )
        seen = torch.tensor(spec.seen_batches(), dtype=torch.bool)
        self.register_buffer("seen_batches", seen, persistent=False)
        weights = spec.class_weights() if spec.train_label_counts else []
        cw = torch.tensor(weights, dtype=torch.float32) if len(weights) == hp["n_groups"] else None
        self.register_buffer("class_weights", cw, persistent=False)
        self._generator: torch.Generator | None = None
        self.heads = HeadSelector(
            self.module.best_head, self.module.head_votes, self.deviations.best_head_rule
        )
        self._reset_head_stats()
        self._build_balancers()

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
        self,
        task: str | None = None,
        stage: str | None = None,
        alternation: str | None = None,
        adversarial: bool | None | str = "keep",
    ) -> None:
        """Change task, stage, alternation or the GAN switch between fits (kept in the
        hyper-parameters). ``None`` keeps task, stage and alternation; ``adversarial`` is
        kept unless given (``None``: the stage's default).

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
        if adversarial != "keep":
            self.hparams["adversarial"] = adversarial
        self._build_balancers()  # the new schedule's phases and terms, fresh as the optimizers

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
            adam(pgc, lr=hp["lr"]),
            adam(m.discriminator_parameters(), lr=hp["discriminator_lr"] or hp["lr"]),
            adam(m.group_parameters(with_encoders=with_enc), lr=hp["lr"]),
        ]
        if self.batch_adversary is not None:
            opts.append(adam(self.batch_adversary.parameters(), lr=hp["lr"]))
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

    # ------------------------------------------------------------------- validation
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
        self._end_balancing_epoch()

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
