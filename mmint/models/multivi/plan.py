"""MultiVI-style integrator: the LightningModule that owns optimisation and the interface."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models.adversary import classifier_loss, fool_loss
from mmint.models.base import Batch, IntegratorModule
from mmint.models.hparams import constructor_args, save_hparams
from mmint.models.inputs import batch_size
from mmint.models.loss_output import log_loss_output
from mmint.models.multivi.module import (
    GeneLikelihood,
    Library,
    ModalityPenalty,
    ModalityWeights,
    MultiVAE,
    ProteinDecoder,
    default_sizes,
)
from mmint.models.multivi.translator import Translator
from mmint.models.stepping import manual_step
from mmint.nn.batch import BatchAdversary
from mmint.nn.optim import adam


def kl_warmup(epoch: int, n_epochs: int) -> float:
    """Linear KL warm-up: ``min(1, epoch / n_epochs)`` (1 when ``n_epochs`` is 0)."""
    return 1.0 if n_epochs <= 0 else min(1.0, epoch / n_epochs)


class MultiVI(IntegratorModule):
    """A MultiVI-style VAE for any number of modalities (see ``docs/multivi.md``).

    Parameters
    ----------
    spec
        The data the model is built for.
    n_hidden
        Hidden width; ``None`` gives scvi-tools' rule ``min(128, int(sqrt(n_peaks)))`` (genes
        when there is no binary modality).
    n_latent
        Latent dimension; ``None`` gives ``int(sqrt(n_hidden))``.
    n_layers_encoder, n_layers_decoder
        Hidden layers of encoders and decoders.
    dropout_rate
        Encoder dropout.
    gene_likelihood
        ``"nb"`` or ``"zinb"`` for gene counts.
    library
        ``"observed"`` (log total counts) or ``"learned"`` (scvi-tools' library encoder).
    protein_mixture
        Background/foreground NB mixture for protein (``clr``) counts.
    modality_weights
        ``"equal"``, ``"universal"`` or ``"cell"`` mixing of the per-modality posteriors.
    modality_penalty
        ``"jeffreys"`` (symmetric KL), ``"mmd"`` (Gaussian-kernel MMD) or ``"none"``.
    penalty_weight
        Multiplier of the penalty (1 in scvi-tools).
    n_epochs_kl_warmup
        Epochs of the linear KL warm-up from 0 to 1 (0: no warm-up).
    lr, weight_decay, eps
        AdamW settings of the VAE.
    adversarial_mixing
        Train a batch classifier on the latent and make the VAE fool it (only with more than
        one batch).
    adversary_kappa
        Weight of the fool loss and of the classifier loss.
    adversary_lr, adversary_eps
        Adam settings of the classifier.
    gradient_clip_val
        Norm clipping of the VAE gradients (``None``: off, as in scvi-tools).
    n_cells
        Size of the per-cell weight table of ``modality_weights="cell"``; ``None`` takes the
        spec's ``n_cells`` (``batch["index"]`` indexes all cells of the dataset).
    """

    name = "multivi"
    #: counts and binary inputs come as sparse batches (sparse first layers)
    accepts_sparse = True

    def __init__(
        self,
        spec: DataSpec | dict,
        n_hidden: int | None = None,
        n_latent: int | None = None,
        n_layers_encoder: int = 2,
        n_layers_decoder: int = 2,
        dropout_rate: float = 0.1,
        gene_likelihood: GeneLikelihood = "nb",
        library: Library = "observed",
        protein_mixture: bool = False,
        modality_weights: ModalityWeights = "equal",
        modality_penalty: ModalityPenalty = "jeffreys",
        penalty_weight: float = 1.0,
        n_epochs_kl_warmup: int = 50,
        lr: float = 1e-4,
        weight_decay: float = 1e-3,
        eps: float = 1e-8,
        adversarial_mixing: bool = True,
        adversary_kappa: float = 1.0,
        adversary_lr: float = 1e-3,
        adversary_eps: float = 0.01,
        gradient_clip_val: float | None = None,
        n_cells: int | None = None,
    ) -> None:
        super().__init__(spec)
        s = self.spec
        hidden, latent = default_sizes(s.kinds, s.n_features, s.transforms, n_hidden, n_latent)
        if hidden < 2:
            raise InputError(
                f"the hidden width resolves to {hidden} (scvi-tools' rule sqrt(n_peaks or "
                f"n_genes) on {dict(s.n_features)} features): too narrow for a network",
                "model.n_hidden",
                "set model.n_hidden (e.g. model.n_hidden=32)",
            )
        if modality_weights == "cell" and not n_cells:
            n_cells = _cell_table_size(s)
        save_hparams(self, constructor_args(MultiVI, locals()))
        self.module = MultiVAE(
            s.modalities,
            s.kinds,
            s.n_features,
            s.transforms,
            s.n_batches,
            n_hidden=hidden,
            n_latent=latent,
            n_layers_encoder=n_layers_encoder,
            n_layers_decoder=n_layers_decoder,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            library=library,
            protein_mixture=protein_mixture,
            modality_weights=modality_weights,
            modality_penalty=modality_penalty,
            penalty_weight=penalty_weight,
            n_cells=n_cells or 0,
        )
        self.module.seen_batches = torch.tensor(s.seen_batches(), dtype=torch.bool)
        # in checkpoints: a later fit of a trained model must not re-initialise its rates
        self.register_buffer("protein_rates_initialised", torch.tensor(False))
        # the adversary lives outside the VAE so that the VAE optimizer never touches it
        self.adversary = (
            BatchAdversary(latent, s.n_batches) if adversarial_mixing and s.n_batches > 1 else None
        )

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Before a fit, start the protein rates at the training cells' mean counts."""
        if stage == "fit":
            self._init_protein_rates()

    def _init_protein_rates(self) -> None:
        """Protein decoders' log-rate bias = log mean count over the observed training cells
        (the spec's ``count_means``).

        Done once (a buffer records it); a resumed fit restores the checkpoint's weights after
        this, so it never overrides trained weights.
        """
        means = self.spec.count_means
        if bool(self.protein_rates_initialised) or not means:
            return
        for m, dec in self.module.decoders.items():
            if isinstance(dec, ProteinDecoder) and m in means:
                mean = torch.tensor(means[m], dtype=torch.float32)
                dec.init_rates(mean.to(dec.log_rate.bias.device))
        self.protein_rates_initialised.fill_(True)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written before the rate initialisation existed are of trained models."""
        checkpoint["state_dict"].setdefault("protein_rates_initialised", torch.tensor(True))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """AdamW for the VAE; Adam for the batch classifier when it is on."""
        h = self.hparams
        opts: list[torch.optim.Optimizer] = [
            adam(
                self.module.parameters(),
                decoupled=True,
                lr=h["lr"],
                weight_decay=h["weight_decay"],
                eps=h["eps"],
            )
        ]
        if self.adversary is not None:
            opts.append(
                adam(self.adversary.parameters(), lr=h["adversary_lr"], eps=h["adversary_eps"])
            )
        return opts

    # ------------------------------------------------------------------ training
    def kl_weight(self) -> float:
        """KL weight of the current epoch (:func:`kl_warmup`)."""
        return kl_warmup(self.current_epoch, self.hparams["n_epochs_kl_warmup"])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """One VAE step (ELBO + fool loss), then one classifier step on the detached latent."""
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        n = batch_size(batch, self.modalities)
        kl_weight = self.kl_weight()
        out = self.module.loss(batch, kl_weight)
        loss = out.loss
        kappa = self.hparams["adversary_kappa"]
        codes = batch.get(keys.BATCH)
        fool = (
            None if self.adversary is None else fool_loss(self.adversary, out.outputs["z"], codes)
        )
        if fool is not None:
            loss = loss + kappa * fool
            out.extras["fool"] = fool
        manual_step(self, opts[0], loss, self.hparams["gradient_clip_val"])
        adv = None if fool is None else classifier_loss(self.adversary, out.outputs["z"], codes)
        if adv is not None:
            manual_step(self, opts[1], kappa * adv)
            out.extras["adversary"] = kappa * adv
        out.extras["kl_weight"] = torch.tensor(kl_weight)
        log_loss_output(self, "train", out, n)
        return loss.detach()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Validation ELBO (KL weight 1) plus penalty as ``val/loss``."""
        out = self.module.loss(batch, kl_weight=1.0)
        log_loss_output(self, "val", out, batch_size(batch, self.modalities))

    # ------------------------------------------------------------------ interface
    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Posterior mean of each modality's encoder (computed for every cell)."""
        means, _ = self.module.encode(batch)
        return means

    def joint_latent(self, batch: Batch) -> Tensor:
        """Mean of the mixed posterior over the modalities each cell has."""
        means, variances = self.module.encode(batch)
        return self.module.joint(batch, means, variances)[0]

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """Decode ``dst`` from ``src``'s posterior mean alone, in ``dst``'s model-input space.

        Gene counts: ``log1p(1e4 * decoded proportions)``; protein (``clr``): CLR of the
        expected counts; binary: probabilities; continuous: the Gaussian mean.
        """
        z = self.module.encoders[src](batch[src])[0]
        return self.module.predict(z, batch, dst)

    def predict_from_joint(self, batch: Batch, dst: str) -> Tensor:
        """Decode ``dst`` from the joint latent (all modalities the cell has)."""
        return self.module.predict(self.joint_latent(batch), batch, dst)

    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        """Explain hook: :meth:`translate` for cells of batch ``batch_code`` as one module."""
        return Translator(self.module, src, dst, batch_code)


def _cell_table_size(spec: DataSpec) -> int:
    """The spec's number of cells, for the per-cell weight table."""
    if spec.n_cells < 1:
        raise InputError(
            "modality_weights='cell' needs the number of cells of the dataset",
            "model.n_cells",
            "build the model from a PairedDataModule's spec, or set model.n_cells",
        )
    return spec.n_cells
