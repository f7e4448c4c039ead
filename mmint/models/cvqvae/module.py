"""CVQVAE networks and losses (pure torch, no Lightning).

Cross-modal VQ-VAE after Liu, Greenberg & Shomorony (MLCB 2022), generalised to any number of
modalities and to missing modalities:

- one MLP encoder per modality (Linear -> BatchNorm -> Mish blocks) gives the pre-quantisation
  latent ``z_m``;
- one EMA codebook per *source* modality quantises ``z_m`` to ``e_m`` (straight-through);
- one decoder per *target* modality decodes ``e_src`` of every other modality (``src != dst``;
  also ``src == dst`` with ``self_recon``), so with two modalities each decoder serves exactly
  one direction, as the original intended;
- loss = sum over ordered pairs of ``MSE(D_dst(e_src), x_dst) / var(x_dst)`` + sum of the
  commitment losses + ``align_weight`` * sum over unordered pairs of ``MSE(z_a, z_b)``.

Every term is a mean over the cells that have the modalities it involves (a cell lacking a
modality is skipped by that modality's encoder, codebook and losses).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmint.errors import InputError
from mmint.models.hparams import check_choice
from mmint.models.loss_output import LossOutput
from mmint.nn.batch import batch_one_hot
from mmint.nn.mlp import MLP
from mmint.nn.projection import InputProjection
from mmint.nn.vq import VectorQuantizerEMA


class CVQVAEModule(nn.Module):
    """Encoders, codebooks, decoders and the CVQVAE loss.

    Parameters
    ----------
    modalities
        Modality names in model order.
    n_features
        ``{modality: model-input width}``.
    kinds
        ``{modality: "counts" | "binary" | "continuous"}``.
    variances
        ``{modality: variance of the model input over training cells}``; reconstruction MSEs
        are divided by it (with ``input_rep="pca"`` the projection's score variance is used).
    n_latent
        Latent (and code) dimension.
    hidden
        Encoder hidden widths; decoders use ``decoder_hidden`` or these reversed.
    decoder_hidden
        Decoder hidden widths (``None``: ``hidden`` reversed).
    dropout
        Dropout after each hidden Linear (0 in the original).
    vq
        Quantise before decoding; ``False`` is the CVAE ablation (decoders read ``z``).
    n_codes, decay, eps, commitment, dead_code_threshold
        Codebook options, see :class:`mmint.nn.vq.VectorQuantizerEMA`.
    align_weight
        Weight of the latent alignment MSE (``lambda_z``).
    self_recon
        Also reconstruct each modality from its own code.
    recon_loss
        ``"mse"`` (MSE / variance for every target, the original) or ``"bce"`` (binary
        targets use BCE on logits, others stay MSE / variance).
    input_rep
        ``"features"`` (the model input) or ``"pca"`` (a fixed projection onto ``n_pca``
        principal axes fitted by :meth:`fit_projections`; encoders read and decoders
        reconstruct the scores).
    n_pca
        Number of principal axes with ``input_rep="pca"``.
    n_batches
        Number of batches in the data.
    decoder_batch
        Append the cell's batch one-hot to every decoder input (an addition to the original,
        which has no covariates): the decoders then explain batch shifts, so the latents need
        not carry the batch.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        n_features: dict[str, int],
        kinds: dict[str, str],
        variances: dict[str, float],
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
        n_batches: int = 1,
        decoder_batch: bool = False,
    ) -> None:
        super().__init__()
        if len(modalities) < 2:
            raise InputError(
                f"cvqvae needs at least two modalities, got {list(modalities)}",
                "data",
                "use a dataset with two or more modalities",
            )
        check_choice("recon_loss", recon_loss, ("mse", "bce"))
        check_choice("input_rep", input_rep, ("features", "pca"))
        if recon_loss == "bce" and input_rep == "pca":
            raise InputError(
                "recon_loss 'bce' needs input_rep 'features' (PCA scores are not 0/1)",
                "model.recon_loss",
                "set model.input_rep=features, or model.recon_loss=mse",
            )
        self.modalities = list(modalities)
        self.kinds = dict(kinds)
        self.vq, self.self_recon = vq, self_recon
        self.align_weight, self.recon_loss = align_weight, recon_loss
        self.input_rep, self.n_latent = input_rep, n_latent
        # batch one-hot fed to the decoders (only meaningful with more than one batch)
        self.n_cond = n_batches if decoder_batch and n_batches > 1 else 0
        # batches with training cells; set by the plan from the data spec (not in checkpoints)
        self.register_buffer("seen_batches", None, persistent=False)
        dec_hidden = list(reversed(list(hidden))) if decoder_hidden is None else decoder_hidden

        self.projections = nn.ModuleDict()
        widths = {}
        for m in self.modalities:
            if input_rep == "pca":
                self.projections[m] = InputProjection(n_features[m], n_pca)
                widths[m] = self.projections[m].k
            else:
                widths[m] = n_features[m]
        # data variances as a buffer so that they are part of the checkpoint
        var = [float(variances.get(m, 1.0) or 1.0) for m in self.modalities]
        self.register_buffer("variance", torch.tensor([v if v > 0 else 1.0 for v in var]))

        def mlp(n_in: int, widths_: Sequence[int], n_out: int) -> MLP:
            return MLP(n_in, widths_, n_out, activation="mish", batch_norm=True, dropout=dropout)

        self.encoders = nn.ModuleDict({m: mlp(widths[m], hidden, n_latent) for m in modalities})
        self.decoders = nn.ModuleDict(
            {m: mlp(n_latent + self.n_cond, dec_hidden, widths[m]) for m in modalities}
        )
        self.quantizers = nn.ModuleDict()
        if vq:
            for m in self.modalities:
                self.quantizers[m] = VectorQuantizerEMA(
                    n_codes, n_latent, decay, eps, commitment, dead_code_threshold
                )

    # ----------------------------------------------------------------- pieces
    def pairs(self) -> list[tuple[str, str]]:
        """Ordered (source, target) pairs that are decoded."""
        return [
            (s, d) for s in self.modalities for d in self.modalities if s != d or self.self_recon
        ]

    def target_variance(self, m: str) -> Tensor:
        """Variance that divides the reconstruction MSE of target ``m``."""
        if self.input_rep == "pca":
            return self.projections[m].variance
        return self.variance[self.modalities.index(m)]

    def project(self, m: str, x: Tensor) -> Tensor:
        """Encoder input (and reconstruction target) of modality ``m``."""
        if self.input_rep == "pca":
            if not bool(self.projections[m].fitted):
                raise RuntimeError("input_rep='pca' but the projections are not fitted yet")
            return self.projections[m](x)
        return x

    def present(self, masks: dict[str, Tensor], n: int, device: torch.device) -> dict[str, Tensor]:
        """Boolean row masks of the cells whose modality is used in this pass.

        In training mode a modality observed in a single cell of the batch is dropped for
        that batch: BatchNorm cannot normalise one row.
        """
        out = {}
        for m in self.modalities:
            mk = masks.get(m)
            p = torch.ones(n, dtype=torch.bool, device=device) if mk is None else mk > 0.5
            if self.training and int(p.sum()) < 2:
                p = torch.zeros_like(p)
            out[m] = p
        return out

    def encode(self, xin: dict[str, Tensor], present: dict[str, Tensor]) -> dict[str, Tensor]:
        """Pre-quantisation latents ``{m: (n, n_latent)}``, zero rows where ``m`` is absent."""
        z = {}
        for m in self.modalities:
            p = present[m]
            out = xin[m].new_zeros(xin[m].shape[0], self.n_latent)
            if bool(p.any()):
                out[p] = self.encoders[m](xin[m][p])
            z[m] = out
        return z

    def code(self, m: str, z_rows: Tensor, update: bool | None = None) -> tuple[Tensor, ...]:
        """Decoder input of source ``m`` for latent rows: ``(code, commitment, perplexity)``."""
        if not self.vq:
            zero = z_rows.new_zeros(())
            return z_rows, zero, zero
        out = self.quantizers[m](z_rows, update=update)
        return out.quantized, out.commitment_loss, out.perplexity

    def decode(self, dst: str, code: Tensor, batch_index: Tensor | None = None) -> Tensor:
        """Raw decoder output of ``dst`` (the batch one-hot is appended with ``decoder_batch``)."""
        if self.n_cond:
            if batch_index is None:
                raise ValueError("decoder_batch=True needs the batch codes of the cells")
            onehot = batch_one_hot(
                batch_index.long().clamp(0, self.n_cond - 1), self.n_cond, self.seen_batches
            )
            code = torch.cat([code, onehot.to(code.dtype)], 1)
        return self.decoders[dst](code)

    def _recon(self, dst: str, out: Tensor, target: Tensor) -> Tensor:
        if self.recon_loss == "bce" and self.kinds[dst] == "binary":
            return F.binary_cross_entropy_with_logits(out, target)
        return F.mse_loss(out, target) / self.target_variance(dst)

    def output(self, dst: str, out: Tensor) -> Tensor:
        """Map a decoder output to ``dst``'s model-input space.

        BCE-trained binary targets go through a sigmoid; with ``pca`` input the scores are
        projected back; binary targets are then clamped to [0, 1] (MSE outputs are unbounded).
        """
        if self.recon_loss == "bce" and self.kinds[dst] == "binary":
            return torch.sigmoid(out)
        if self.input_rep == "pca":
            out = self.projections[dst].inverse(out)
        if self.kinds[dst] == "binary":
            out = out.clamp(0.0, 1.0)
        return out

    # ------------------------------------------------------------------ loss
    def loss(
        self, x: dict[str, Tensor], masks: dict[str, Tensor], batch_index: Tensor | None = None
    ) -> LossOutput:
        """All loss terms of a batch (EMA codebook steps happen here in training mode).

        Terms: ``recon_<src>_to_<dst>`` (variance-scaled reconstruction of the pairs that had
        cells), ``commitment_<m>`` and ``align_<a>_<b>`` (MSE between pre-quantisation
        latents, ``a`` before ``b`` in model order); extras: ``perplexity_<m>`` and the sum
        of each group (``recon``, ``align``, ``commitment``).

        Parameters
        ----------
        x
            ``{modality: (n, n_features) model input}``.
        masks
            ``{modality: (n,) 0/1}``; a missing entry means every cell has the modality.
        batch_index
            ``(n,)`` batch codes (needed with ``decoder_batch``).
        """
        n = next(iter(x.values())).shape[0]
        device = next(iter(x.values())).device
        present = self.present(masks, n, device)
        xin = {m: self.project(m, x[m]) for m in self.modalities}
        z = self.encode(xin, present)
        min_rows = 2 if self.training else 1  # BatchNorm in the decoders, as in encode

        codes, recon, commitment, align, extras = {}, {}, {}, {}, {}
        for m in self.modalities:
            p = present[m]
            if not bool(p.any()):
                continue
            code, commit, perp = self.code(m, z[m][p])
            full = z[m].new_zeros(z[m].shape)
            full[p] = code
            codes[m] = full
            if self.vq:
                commitment[f"commitment_{m}"], extras[f"perplexity_{m}"] = commit, perp
        for src, dst in self.pairs():
            both = present[src] & present[dst]
            if int(both.sum()) < min_rows:
                continue
            bi = None if batch_index is None else batch_index[both]
            pred = self.decode(dst, codes[src][both], bi)
            recon[f"recon_{src}_to_{dst}"] = self._recon(dst, pred, xin[dst][both])
        for a, b in combinations(self.modalities, 2):
            both = present[a] & present[b]
            if bool(both.any()):
                align[f"align_{a}_{b}"] = F.mse_loss(z[a][both], z[b][both])
        parts = [*recon.values(), *commitment.values()]
        parts += [self.align_weight * v for v in align.values()]
        total = torch.stack(parts).sum() if parts else z[self.modalities[0]].new_zeros(())
        for name, group in (("recon", recon), ("align", align), ("commitment", commitment)):
            if group:  # the unweighted sum of each group, logged
                extras[name] = torch.stack(list(group.values())).sum()
        return LossOutput(total, {**recon, **commitment, **align}, extras)

    # ------------------------------------------------------------- inference
    def latents(self, x: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """Unquantised latents ``{m: (n, n_latent)}``; zero rows for cells lacking ``m``."""
        n = next(iter(x.values())).shape[0]
        present = self.present(masks, n, next(iter(x.values())).device)
        xin = {m: self.project(m, x[m]) for m in self.modalities}
        return self.encode(xin, present)

    def joint(self, x: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """Mean of the unquantised latents of the modalities each cell has (0 if none)."""
        n = next(iter(x.values())).shape[0]
        present = self.present(masks, n, next(iter(x.values())).device)
        z = self.latents(x, masks)
        w = torch.stack([present[m].to(z[m].dtype) for m in self.modalities], 1)
        zs = torch.stack([z[m] for m in self.modalities], 1)
        return (zs * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)

    def translate(
        self,
        x: dict[str, Tensor],
        masks: dict[str, Tensor],
        src: str,
        dst: str,
        batch_index: Tensor | None = None,
    ) -> Tensor:
        """``dst`` predicted from ``src``'s code, in ``dst``'s model-input space.

        Rows of cells lacking ``src`` are decoded from a zero latent and carry no information.
        The codebook is not updated.
        """
        z = self.latents(x, masks)[src]
        code, _, _ = self.code(src, z, update=False)
        return self.output(dst, self.decode(dst, code, batch_index))
