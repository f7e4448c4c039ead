"""CVQVAE as a LightningModule: the shared :class:`~mmint.models.vae_plan.VAEPlan` with one
Adam and the codebook health logged, the ``pca`` input projections and the model interface."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mmint.data.spec import DataSpec
from mmint.keys import BATCH
from mmint.models.base import Batch
from mmint.models.cvqvae.config import Networks
from mmint.models.cvqvae.module import CVQVAEModule
from mmint.models.hparams import constructor_args, save_hparams
from mmint.models.loss_output import LossOutput
from mmint.models.vae_plan import VAEPlan
from mmint.nn.optim import adam
from mmint.nn.sparse import csr_tensor, is_sparse, scipy_csr


class CVQVAE(VAEPlan):
    """Cross-modal VQ-VAE (CVQVAE-style) integrator.

    Each modality is encoded to a latent, quantised by its own EMA codebook and decoded into
    the *other* modalities; the pre-quantisation latents of the modalities of a cell are
    pulled together by an MSE. See ``docs/cvqvae.md`` and :class:`CVQVAEModule`.

    Parameters
    ----------
    spec
        The data description (or its dict form).
    n_latent
        Latent and code dimension (16 in the original).
    hidden
        Encoder hidden widths; decoders mirror them unless ``decoder_hidden`` is given.
    decoder_hidden
        Decoder hidden widths.
    dropout
        Dropout after hidden Linear layers.
    vq
        Use the quantiser; ``False`` is the CVAE ablation.
    n_codes, decay, eps, commitment
        Codebook size, EMA decay, Laplace smoothing, commitment weight ``beta``.
    dead_code_threshold
        EMA cluster size below which a code is logged as dead.
    align_weight
        Weight ``lambda_z`` of the latent alignment MSE.
    self_recon
        Also decode each modality from its own code.
    recon_loss
        ``"mse"`` (default, divided by the data variance) or ``"bce"`` for binary targets.
    input_rep
        ``"features"`` or ``"pca"`` (a projection fitted on training cells at fit start).
    n_pca
        Principal axes per modality with ``input_rep="pca"``.
    pca_max_cells
        At most this many training cells per modality are used to fit the projection.
    decoder_batch
        Feed the batch one-hot to the decoders (not in the original).
    lr, weight_decay
        Adam settings.
    gradient_clip_val
        Gradient-norm clipping (``None``: off).
    """

    name = "cvqvae"
    #: sparse inputs come as sparse batches (used sparse with ``input_rep="pca"``)
    accepts_sparse = True

    def __init__(
        self,
        spec: DataSpec | dict,
        n_latent: int = 16,
        hidden: Sequence[int] = (256, 128),
        decoder_hidden: Sequence[int] | None = None,
        dropout: float = 0.0,
        vq: bool = True,
        n_codes: int = 1024,
        decay: float = 0.99,
        eps: float = 1e-5,
        commitment: float = 0.25,
        dead_code_threshold: float = 1e-2,
        align_weight: float = 10.0,
        self_recon: bool = False,
        recon_loss: str = "mse",
        input_rep: str = "features",
        n_pca: int = 50,
        pca_max_cells: int = 20000,
        decoder_batch: bool = False,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__(spec)
        hidden = [int(h) for h in hidden]
        decoder_hidden = None if decoder_hidden is None else [int(h) for h in decoder_hidden]
        net: dict[str, Any] = dict(
            n_latent=int(n_latent),
            hidden=hidden,
            decoder_hidden=decoder_hidden,
            dropout=float(dropout),
            vq=bool(vq),
            n_codes=int(n_codes),
            decay=float(decay),
            eps=float(eps),
            commitment=float(commitment),
            dead_code_threshold=float(dead_code_threshold),
            align_weight=float(align_weight),
            self_recon=bool(self_recon),
            recon_loss=str(recon_loss),
            input_rep=str(input_rep),
            n_pca=int(n_pca),
            decoder_batch=bool(decoder_batch),
        )
        optim: dict[str, Any] = dict(
            pca_max_cells=int(pca_max_cells),
            lr=float(lr),
            weight_decay=float(weight_decay),
            gradient_clip_val=None if gradient_clip_val is None else float(gradient_clip_val),
        )
        save_hparams(self, constructor_args(CVQVAE, {**net, **optim}))
        self.module = CVQVAEModule(Networks.resolve(self.spec, net))
        self.module.seen_batches = torch.tensor(self.spec.seen_batches(), dtype=torch.bool)
        self.adversary = None  # no batch adversary (the shared plan's is optional)

    # ---------------------------------------------------------------- inputs
    def _inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Float inputs and masks per modality (:meth:`CVQVAEModule.inputs`)."""
        return self.module.inputs(batch)

    @torch.no_grad()
    def fit_input_projection(self, batches: Iterable[Batch]) -> None:
        """Fit the ``pca`` input projections from training batches (observed rows only).

        Called by :meth:`on_fit_start` with the datamodule's training loader; call it yourself
        when fitting without a datamodule.
        """
        cap = self.hparams.pca_max_cells
        rows: dict[str, list[Any]] = {m: [] for m in self.modalities}
        for batch in batches:
            x, masks = self._inputs(batch)
            for m in self.modalities:
                have = sum(r.shape[0] for r in rows[m])
                if have >= cap:
                    continue
                n = x[m].shape[0]
                keep = (masks[m] > 0.5) if m in masks else torch.ones(n, dtype=torch.bool)
                picked = np.flatnonzero(keep.cpu().numpy())[: cap - have]
                # sparse rows are gathered as scipy CSR: never densified
                rows[m].append(scipy_csr(x[m])[picked] if is_sparse(x[m]) else x[m][picked].cpu())
            if all(sum(r.shape[0] for r in rows[m]) >= cap for m in self.modalities):
                break
        for m in self.modalities:
            proj = self.module.projections[m]
            if rows[m] and sp.issparse(rows[m][0]):
                fit_rows = csr_tensor(sp.vstack(rows[m], format="csr"))
            else:
                fit_rows = torch.cat(rows[m])
            proj.fit(fit_rows.to(proj.mean.device))

    def on_fit_start(self) -> None:
        """Fit the ``pca`` projections from the training data if they are not fitted yet."""
        if self.module.input_rep != "pca":
            return
        if all(bool(p.fitted) for p in self.module.projections.values()):
            return
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise RuntimeError(
                "input_rep='pca' needs trainer.fit(model, datamodule=...) or a prior call of "
                "fit_input_projection(train_batches)"
            )
        self.fit_input_projection(dm.train_dataloader())

    # -------------------------------------------------------------- training
    def vae_optimizer(self) -> torch.optim.Optimizer:
        """One Adam over encoders and decoders (codebooks are buffers moved by EMA)."""
        return adam(
            self.module.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def step_extras(self, out: LossOutput) -> None:
        """Log the codebook health: dead codes per modality."""
        for m, q in self.module.quantizers.items():
            out.extras[f"dead_codes_{m}"] = torch.tensor(float(q.dead_codes()))

    # ------------------------------------------------------------- interface
    def latents(self, batch: Batch) -> dict[str, Tensor]:
        """Unquantised encoder outputs; rows of cells lacking a modality are zero."""
        return self.module.latents(*self._inputs(batch))

    def joint_latent(self, batch: Batch) -> Tensor:
        """Mean of the observed modalities' unquantised latents (one row per cell)."""
        return self.module.joint(*self._inputs(batch))

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        """Decoder of ``dst`` applied to the quantised latent of ``src`` (``src == dst``: self
        reconstruction through the same path); binary targets are in [0, 1]."""
        return self.module.translate(*self._inputs(batch), src, dst, batch.get(BATCH))

    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        """Explain hook: a module mapping ``src``'s model input ``(n, p_src)`` to the
        prediction of ``dst`` (the same path as :meth:`translate`, every cell observed;
        with ``decoder_batch`` every cell is decoded as batch ``batch_code``)."""
        return _Translator(self.module, src, dst, batch_code)


class _Translator(nn.Module):
    def __init__(self, module: CVQVAEModule, src: str, dst: str, batch_code: int) -> None:
        super().__init__()
        self.module, self.src, self.dst, self.batch_code = module, src, dst, batch_code

    def forward(self, x: Tensor) -> Tensor:
        m = self.module
        z = m.encoders[self.src](m.project(self.src, x))
        code, _, _ = m.code(self.src, z, update=False)
        batch_index = torch.full((x.shape[0],), self.batch_code, device=x.device)
        return m.output(self.dst, m.decode(self.dst, code, batch_index))
