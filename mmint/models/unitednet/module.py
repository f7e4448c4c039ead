"""UnitedNet's networks and loss computations (pure PyTorch, no Lightning).

Per modality ``m``: an encoder ``E_m`` (input -> latent), a decoder ``D_m`` (latent -> input
space; logits for a binary modality) and a discriminator ``C_m`` (input -> sigmoid scores).
Per head ``h``: a fuser (learnable softmax weights over modalities, renormalised over the
modalities each cell has), a projector and a cosine-style group layer. Any translation
``D_i(E_j(x_j))`` is available, but a step computes only what its losses need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

import mmint.models.unitednet.losses as L
from mmint.models.unitednet.batched import call_stacked, frozen, row_independent
from mmint.models.unitednet.config import FUSERS, LATENT_PROJECTORS, Networks
from mmint.models.unitednet.group_heads import GroupHead, WeightedMeanFuser, stacked_heads
from mmint.nn.encoders import ResidualMLP, VariationalLatent, gaussian_kl
from mmint.nn.mlp import MLP


class UnitedNetModule(nn.Module):
    """UnitedNet's networks, built from a resolved :class:`~mmint.models.unitednet.config.Networks`.

    Parameters
    ----------
    net
        Every width, norm, dropout and head setting, per modality where it differs.
    """

    def __init__(self, net: Networks) -> None:
        super().__init__()
        self.config = net
        modalities, n_features, binary = net.modalities, net.n_features, net.binary
        latent_dim, n_groups, n_covariates = net.latent_dim, net.n_groups, net.n_covariates
        fuser, latent_projector, init = net.fuser, net.latent_projector, net.init
        activation = net.activation
        if fuser not in FUSERS:
            raise ValueError(f"unknown fuser {fuser!r}; use one of {FUSERS}")
        if latent_projector not in LATENT_PROJECTORS:
            raise ValueError(
                f"unknown latent_projector {latent_projector!r}; use {LATENT_PROJECTORS}"
            )
        self.modalities = list(modalities)
        self.binary = {m: bool(binary[m]) for m in self.modalities}
        self.latent_dim = latent_dim
        self.n_groups = n_groups
        self.n_covariates = n_covariates
        #: the configured discriminators would output a constant (LayerNorm over one unit)
        self.constant_discriminator = (
            net.discriminator_out_dim == 1 and net.discriminator_out_norm == "layer"
        )
        d_norm = None if self.constant_discriminator else net.discriminator_out_norm
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.discriminators = nn.ModuleDict()
        encoder_class = ResidualMLP if net.encoder == "residual" else MLP
        for m in self.modalities:
            first = {"dropout_first_only": net.dropout_first_only, "activation": activation}
            self.encoders[m] = encoder_class(
                n_features[m],
                net.encoder_hidden[m],
                latent_dim,
                out_activation=net.latent_activation,
                out_norm=net.latent_norm,
                dropout=net.dropout[m],
                batch_norm=net.batch_norm,
                layer_norm=net.layer_norm,
                **first,
            )
            self.decoders[m] = MLP(
                latent_dim + n_covariates,
                net.decoder_hidden[m],
                n_features[m],
                dropout=net.decoder_dropout[m],
                batch_norm=net.decoder_batch_norm,
                layer_norm=net.layer_norm,
                **first,
            )
            self.discriminators[m] = MLP(
                n_features[m],
                net.discriminator_hidden[m],
                net.discriminator_out_dim,
                out_activation="sigmoid",
                out_norm=d_norm,
                dropout=net.discriminator_dropout[m],
                **first,
            )
        self.heads = nn.ModuleList(
            GroupHead(
                len(self.modalities),
                latent_dim,
                n_groups,
                net.projector_dim,
                fuser == "feature_weighted_mean",
                net.projector_norm,
            )
            for _ in range(net.n_head)
        )
        self.latent_projector = (
            nn.Linear(latent_dim, latent_dim) if latent_projector == "linear" else nn.Identity()
        )
        #: per modality, a Gaussian latent on the encoder's output (``net.variational``)
        self.variational = (
            nn.ModuleDict({m: VariationalLatent(latent_dim) for m in self.modalities})
            if net.variational
            else None
        )
        #: KL of the last training-mode :meth:`encode` (variational latents only)
        self.last_kl: Tensor | None = None
        #: index of the head used for outputs; chosen on validation losses, kept in checkpoints
        self.register_buffer("best_head", torch.zeros((), dtype=torch.long))
        #: passes each head has won (the original's best-head vote; kept in checkpoints)
        self.register_buffer("head_votes", torch.zeros(net.n_head, dtype=torch.long))
        self.init = init
        if init == "kaiming_normal":
            _kaiming(self)
        elif init != "default":
            raise ValueError(f"unknown init {init!r}; use 'kaiming_normal' or 'default'")
        for latent in (self.variational or {}).values():
            latent.reset_parameters()  # a small, uniform variance at first, whatever the init
        self.normalize_heads()

    # ----------------------------------------------------------------- parameter groups
    def encoder_parameters(self) -> list[nn.Parameter]:
        """The encoders (and their variational latents)."""
        extra = [] if self.variational is None else list(self.variational.parameters())
        return [*self.encoders.parameters(), *extra]

    def pgc_parameters(self) -> list[nn.Parameter]:
        """Encoders, decoders and latent projector (prediction / translation / contrastive)."""
        return [
            *self.encoder_parameters(),
            *self.decoders.parameters(),
            *self.latent_projector.parameters(),
        ]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """The discriminators (their own optimizer)."""
        return list(self.discriminators.parameters())

    def group_parameters(self, with_encoders: bool) -> list[nn.Parameter]:
        """Fusers, projectors and group layers, plus the encoders when asked."""
        params = list(self.heads.parameters())
        return [*self.encoder_parameters(), *params] if with_encoders else params

    def reset_group_heads(self, init: str | None = None) -> None:
        """Fresh fusers, projectors, group layers and latent projector; best head 0.

        ``init``: ``kaiming_normal`` or torch's ``default``; ``None`` uses the construction's.
        Votes for the best head (``head_votes``) are kept, as the original keeps its history.
        """
        for module in [*self.heads.modules(), *self.latent_projector.modules()]:
            if isinstance(module, nn.Linear | nn.LayerNorm | WeightedMeanFuser):
                module.reset_parameters()
        if (init or self.init) == "kaiming_normal":
            _kaiming(self.heads)
            _kaiming(self.latent_projector)
        self.normalize_heads()
        self.best_head.zero_()

    # ------------------------------------------------------------------------ forward
    def encode(self, x: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """Latent of every modality ``{m: (B, d)}``.

        In training only the observed rows go through the encoder (rows of absent cells are 0,
        and never reach batch statistics); in eval mode every row is encoded. A variational
        latent samples in training (its mean in eval mode) and leaves the KL of the observed
        rows in :attr:`last_kl`.
        """
        out = {}
        stats = []
        for m in self.modalities:
            obs = masks[m] > 0
            n_obs = int(obs.sum())
            if not self.training or n_obs == obs.numel() or n_obs < 2:
                out[m] = self._latent(m, x[m], stats, obs)
            else:
                z = x[m].new_zeros((x[m].shape[0], self.latent_dim))
                h = self._latent(m, x[m][obs], stats, None)
                out[m] = z.index_put((obs.nonzero().squeeze(1),), h)
        if self.variational is not None and self.training:
            mu, log_var = torch.cat([s[0] for s in stats]), torch.cat([s[1] for s in stats])
            self.last_kl = gaussian_kl(mu, log_var) if mu.numel() else None
        return out

    def _latent(self, m: str, x: Tensor, stats: list, rows: Tensor | None) -> Tensor:
        """Encoder ``m`` (then its variational latent); ``(mu, log_var)`` of ``rows`` (all when
        ``None``) appended to ``stats``."""
        h = self.encoders[m](x)
        if self.variational is None:
            return h
        z, mu, log_var = self.variational[m](h)
        if rows is not None and not bool(rows.all()):
            mu, log_var = mu[rows], log_var[rows]
        stats.append((mu, log_var))
        return z

    def decode(
        self, z: Tensor, dst: str, probabilities: bool = False, cov: Tensor | None = None
    ) -> Tensor:
        """Decoder ``dst`` on latents ``z`` (and covariates ``cov`` when the decoders take them).

        Logits of a binary modality unless ``probabilities``.
        """
        if self.n_covariates:
            if cov is None:
                raise ValueError("the decoders take covariates: pass cov (the one-hot batch)")
            z = torch.cat([z, cov], dim=1)
        out = self.decoders[dst](z)
        return torch.sigmoid(out) if probabilities and self.binary[dst] else out

    def stack(self, z: dict[str, Tensor], masks: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(z (B, M, d), mask (B, M))`` in modality order."""
        zs = torch.stack([z[m] for m in self.modalities], dim=1)
        mask = torch.stack([masks[m].to(zs.dtype) for m in self.modalities], dim=1)
        return zs, mask

    def head_outputs(
        self, z: dict[str, Tensor], masks: dict[str, Tensor], heads: Sequence[int] | None = None
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """``(fused, hidden, logits)`` of the given heads (all by default).

        The group layers' rows are unit vectors here: :meth:`normalize_heads` runs after
        every step that changes them (the reference normalised before every forward; the
        same values, but a forward never writes to the weights, so data-parallel processes
        that evaluate differently stay identical).
        """
        heads = range(len(self.heads)) if heads is None else heads
        zs, mask = self.stack(z, masks)
        return [self.heads[h](zs, mask) for h in heads]

    @torch.no_grad()
    def normalize_heads(self) -> None:
        """L2-normalise every group layer's weight rows in place."""
        for head in self.heads:
            head.normalize_()

    def best(self) -> int:
        """Index of the best head."""
        return int(self.best_head)

    def joint_latent(self, z: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """Fused latent of the best head."""
        zs, mask = self.stack(z, masks)
        return self.heads[self.best()].fuser(zs, mask)

    def discriminate(self, x: Tensor, m: str) -> Tensor:
        """Discriminator ``m``'s sigmoid scores."""
        return self.discriminators[m](x)

    # ------------------------------------------------------------------------ losses
    def translation_terms(
        self,
        z: dict[str, Tensor],
        targets: dict[str, Tensor],
        masks: dict[str, Tensor],
        cross: bool | None,
        cov: Tensor | None = None,
    ) -> list[tuple[Tensor, Tensor, bool, str, str]]:
        """``(pred, target, binary, dst, src)`` for the diagonal (``cross=False``), the
        off-diagonal (``True``) or all (``None``) pairs, over the cells that have both
        modalities; in ``(dst, src)`` order. A decoder decodes all its sources in one call
        when that gives the same values (:func:`~.batched.call_stacked`)."""
        terms = []
        for dst in self.modalities:
            parts = []
            for src in self.modalities:
                if cross is not None and (dst == src) == cross:
                    continue
                both = (masks[dst] > 0) & (masks[src] > 0)
                zz, tt, cc = z[src], targets[dst], cov
                if not bool(both.all()):
                    zz, tt = zz[both], tt[both]
                    cc = None if cc is None else cc[both]
                if cc is not None:
                    zz = torch.cat([zz, cc], dim=1)
                parts.append((zz, tt, src))
            preds = call_stacked(self.decoders[dst], [p[0] for p in parts])
            for y, (_, tt, src) in zip(preds, parts, strict=True):
                terms.append((y, tt, self.binary[dst], dst, src))
        return terms

    def pgc_losses(
        self,
        inputs: dict[str, Tensor],
        targets: dict[str, Tensor],
        masks: dict[str, Tensor],
        *,
        translation: bool = True,
        contrastive: bool = True,
        adversarial: bool = True,
        temperature: float = 0.1,
        negative_fraction: float = 0.25,
        generator: torch.Generator | None = None,
        z: dict[str, Tensor] | None = None,
        groups: Tensor | None = None,
        cov: Tensor | None = None,
        strata: Tensor | None = None,
        train_discriminators: bool = True,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Unweighted prediction / translation / contrastive / generator losses.

        Parameters
        ----------
        inputs
            Encoder inputs (noised in training).
        targets
            Clean model inputs the decoders are scored against.
        masks
            Per-modality masks.
        translation, contrastive, adversarial
            Which optional terms to compute (reconstruction always is).
        temperature, negative_fraction, generator
            Contrastive settings.
        z
            Latents when already computed.
        groups
            Predicted group per cell for contrastive negatives (default: the best head's).
        cov
            Decoder covariates per cell (the one-hot batch), when the decoders take them.
        strata
            Batch code per cell: contrastive negatives from the anchor's batch only.
        train_discriminators
            Whether the generator loss's graph reaches the discriminators' parameters (only
            when one optimizer steps translation and discriminators together).

        Returns
        -------
        losses
            ``reconstruction`` and, when asked, ``translation``, ``contrastive``, ``generator``.
        fakes
            Detached self-reconstructions of the observed cells, in input space (for the
            discriminator step); empty unless ``adversarial``.
        """
        z = self.encode(inputs, masks) if z is None else z
        out: dict[str, Tensor] = {}
        if self.n_covariates and cov is None:
            raise ValueError("the decoders take covariates: pass cov (the one-hot batch)")
        cross = translation and len(self.modalities) > 1
        terms = self.translation_terms(z, targets, masks, cross=None if cross else False, cov=cov)
        recon = [t for t in terms if t[3] == t[4]]
        out["reconstruction"] = L.mean_distance([t[:3] for t in recon])
        if cross:
            out["translation"] = L.mean_distance([t[:3] for t in terms if t[3] != t[4]])
        if contrastive and len(self.modalities) > 1:
            if groups is None:
                with torch.no_grad():
                    detached = {m: v.detach() for m, v in z.items()}
                    groups = self.head_outputs(detached, masks, [self.best()])[0][2].argmax(1)
            out["contrastive"] = L.multiview_contrastive_loss(
                [self.latent_projector(z[m]) for m in self.modalities],
                [masks[m] for m in self.modalities],
                groups,
                temperature,
                negative_fraction,
                generator,
                strata,
            )
        fakes: dict[str, Tensor] = {}
        if adversarial:
            scores = []
            for pred, _, binary, m, _ in recon:
                fake = torch.sigmoid(pred) if binary else pred
                # the discriminators' own gradients of this loss are never used (their
                # optimizer zeroes them first) unless one optimizer steps both
                with (
                    contextlib.nullcontext()
                    if train_discriminators
                    else frozen(self.discriminators[m])
                ):
                    scores.append(self.discriminate(fake, m))
                fakes[m] = fake.detach()
            out["generator"] = L.generator_loss(scores)
        return out, fakes

    def discriminator_loss(
        self, targets: dict[str, Tensor], fakes: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> Tensor:
        """LSGAN discriminator loss on observed real cells and detached reconstructions."""
        real, fake = {}, {}
        for m in fakes:
            obs = masks[m] > 0
            x = targets[m] if bool(obs.all()) else targets[m][obs]
            if row_independent(self.discriminators[m]):  # draws no random numbers
                real[m], fake[m] = call_stacked(self.discriminators[m], [x, fakes[m]])
            else:
                real[m] = self.discriminate(x, m)
        # the others in the original order (reals, then fakes): the same dropout draws
        fake.update({m: self.discriminate(fakes[m], m) for m in fakes if m not in fake})
        return L.discriminator_loss([real[m] for m in fakes], [fake[m] for m in fakes])

    def group_losses(
        self,
        z: dict[str, Tensor],
        masks: dict[str, Tensor],
        labels: Tensor | None,
        mode: str,
        class_weights: Tensor | None = None,
        rel_sigma: float = 0.15,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Per-head group losses and the best head's logits.

        Parameters
        ----------
        mode
            ``"classification"`` (class-weighted cross-entropy over labelled cells) or
            ``"clustering"`` (DDC and self-entropy over cells with any modality).

        Returns
        -------
        losses
            ``{"cross_entropy": (H,)}`` or ``{"ddc": (H,), "self_entropy": (H,)}``.
        logits
            The best head's logits ``(B, K)``.
        """
        zs, mask = self.stack(z, masks)
        _, hidden, logits = stacked_heads(self.heads, zs, mask)  # (H, B, .)
        if mode == "classification":
            assert labels is not None
            losses = {"cross_entropy": L.cross_entropy_loss(logits, labels, class_weights)}
        else:
            any_obs = mask.amax(dim=1) > 0
            if not bool(any_obs.all()):
                hidden, logits = hidden[:, any_obs], logits[:, any_obs]
            probs = torch.softmax(logits, dim=-1)
            losses = {
                "ddc": L.ddc_loss(probs, hidden, rel_sigma),
                "self_entropy": L.self_entropy_loss(probs),
            }
        return losses, logits[self.best()]


def _kaiming(module: nn.Module) -> None:
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.kaiming_normal_(sub.weight)
