"""UnitedNet's networks and loss computations (pure PyTorch, no Lightning).

Per modality ``m``: an encoder ``E_m`` (input -> latent), a decoder ``D_m`` (latent -> input
space; logits for a binary modality) and a discriminator ``C_m`` (input -> sigmoid scores).
Per head ``h``: a fuser (learnable softmax weights over modalities, renormalised over the
modalities each cell has), a projector and a cosine-style group layer. Any translation
``D_i(E_j(x_j))`` is available, but a step computes only what its losses need.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

import mmint.models.unitednet.losses as L
from mmint.models.unitednet.config import FUSERS, LATENT_PROJECTORS, Networks
from mmint.nn.batch import AppendConstant
from mmint.nn.encoders import ResidualMLP, VariationalLatent, gaussian_kl
from mmint.nn.mlp import MLP

_EPS = 1e-12


class WeightedMeanFuser(nn.Module):
    """Softmax-weighted mean of the modality latents, over the modalities a cell has.

    Parameters
    ----------
    n_modalities
        Number of modalities ``M``.
    latent_dim
        Latent width ``d``.
    per_feature
        One weight vector per latent dimension (``feature_weighted_mean``) instead of one for
        all dimensions (``weighted_mean``).
    """

    def __init__(self, n_modalities: int, latent_dim: int, per_feature: bool = False) -> None:
        super().__init__()
        shape = (latent_dim, n_modalities) if per_feature else (n_modalities,)
        self.per_feature = per_feature
        self.theta = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """All logits ``1/M``: equal weights, as in the reference."""
        nn.init.constant_(self.theta, 1.0 / self.theta.shape[-1])

    def weights(self) -> Tensor:
        """Softmax weights over modalities, ``(M,)`` or ``(d, M)``."""
        return torch.softmax(self.theta, dim=-1)

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        """Fuse ``z`` ``(B, M, d)`` with mask ``(B, M)`` into ``(B, d)``.

        A cell's weights are renormalised over its observed modalities; a cell with none gets 0.
        """
        w = self.weights()
        w = w.T if self.per_feature else w[:, None]  # (M, d) or (M, 1)
        wm = w[None] * mask[:, :, None]
        return (wm * z).sum(dim=1) / wm.sum(dim=1).clamp_min(_EPS)


class GroupHead(nn.Module):
    """Fuser -> projector ``Linear(d, p) [+ LayerNorm + ReLU]`` -> group layer (no bias).

    The group layer's weight rows are L2-normalised in place before every use
    (:meth:`normalize_`), which makes its logits cosine-style in the prototypes.
    """

    def __init__(
        self,
        n_modalities: int,
        latent_dim: int,
        n_groups: int,
        projector_dim: int = 100,
        per_feature: bool = False,
        projector_norm: bool = True,
    ) -> None:
        super().__init__()
        self.fuser = WeightedMeanFuser(n_modalities, latent_dim, per_feature)
        layers: list[nn.Module] = [nn.Linear(latent_dim, projector_dim)]
        if projector_norm:
            layers += [nn.LayerNorm(projector_dim), nn.ReLU()]
        self.projector = nn.Sequential(*layers)
        self.classifier = nn.Linear(projector_dim, n_groups, bias=False)

    @torch.no_grad()
    def normalize_(self) -> None:
        """L2-normalise the group layer's weight rows in place."""
        w = self.classifier.weight
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(_EPS))

    def forward(self, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(fused (B, d), hidden (B, p), logits (B, K))`` from ``z`` ``(B, M, d)``."""
        fused = self.fuser(z, mask)
        hidden = self.projector(fused)
        return fused, hidden, self.classifier(hidden)


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
        cross: bool,
        cov: Tensor | None = None,
    ) -> list[tuple[Tensor, Tensor, bool, str, str]]:
        """``(pred, target, binary, dst, src)`` for the diagonal (``cross=False``) or the
        off-diagonal pairs, over the cells that have both modalities."""
        terms = []
        for dst in self.modalities:
            for src in self.modalities:
                if (dst == src) == cross:
                    continue
                both = (masks[dst] > 0) & (masks[src] > 0)
                zz, tt, cc = z[src], targets[dst], cov
                if not bool(both.all()):
                    zz, tt = zz[both], tt[both]
                    cc = None if cc is None else cc[both]
                terms.append((self.decode(zz, dst, cov=cc), tt, self.binary[dst], dst, src))
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
        recon = self.translation_terms(z, targets, masks, cross=False, cov=cov)
        out["reconstruction"] = L.mean_distance([t[:3] for t in recon])
        if translation and len(self.modalities) > 1:
            out["translation"] = L.mean_distance(
                [t[:3] for t in self.translation_terms(z, targets, masks, cross=True, cov=cov)]
            )
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
                scores.append(self.discriminate(fake, m))
                fakes[m] = fake.detach()
            out["generator"] = L.generator_loss(scores)
        return out, fakes

    def discriminator_loss(
        self, targets: dict[str, Tensor], fakes: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> Tensor:
        """LSGAN discriminator loss on observed real cells and detached reconstructions."""
        real = []
        for m in fakes:
            obs = masks[m] > 0
            x = targets[m] if bool(obs.all()) else targets[m][obs]
            real.append(self.discriminate(x, m))
        return L.discriminator_loss(real, [self.discriminate(fakes[m], m) for m in fakes])

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
        outs = self.head_outputs(z, masks)
        if mode == "classification":
            assert labels is not None
            ce = [L.cross_entropy_loss(lg, labels, class_weights) for _, _, lg in outs]
            losses = {"cross_entropy": torch.stack(ce)}
        else:
            any_obs = torch.stack([masks[m] > 0 for m in self.modalities]).any(0)
            ddc, ent = [], []
            for _, hidden, lg in outs:
                if not bool(any_obs.all()):
                    hidden, lg = hidden[any_obs], lg[any_obs]
                probs = torch.softmax(lg, dim=1)
                ddc.append(L.ddc_loss(probs, hidden, rel_sigma))
                ent.append(L.self_entropy_loss(probs))
            losses = {"ddc": torch.stack(ddc), "self_entropy": torch.stack(ent)}
        return losses, outs[self.best()][2]


class TranslationNet(nn.Sequential):
    """``x_src -> x_hat_dst`` (probabilities for a binary target): a hook for explainers.

    A plain sequence of modules (encoder, [batch covariate], decoder, [sigmoid]), so that
    explainers that walk the module graph (shap's DeepExplainer) can use it as it is. With
    batch-conditioned decoders the covariate is fixed: batch ``batch_code``, or with ``None``
    the uniform mix of the batches (a prediction averaged over batches in its input).
    """

    def __init__(
        self, module: UnitedNetModule, src: str, dst: str, batch_code: int | None = None
    ) -> None:
        k = module.n_covariates
        layers: dict[str, nn.Module] = {"encoder": module.encoders[src]}
        if k:
            cov = torch.full((k,), 1.0 / k)
            if batch_code is not None:
                cov = torch.zeros(k)
                cov[batch_code] = 1.0
            layers["covariate"] = AppendConstant(cov)
        layers["decoder"] = module.decoders[dst]
        if module.binary[dst]:
            layers["sigmoid"] = nn.Sigmoid()
        super().__init__(OrderedDict(layers))
        self.binary = module.binary[dst]

    @property
    def cov(self) -> Tensor:
        """The decoder covariate row ``(1, n_batches)`` (``(1, 0)`` without one)."""
        if "covariate" in self._modules:
            return self.covariate.row
        return torch.zeros(1, 0)


class GroupNet(nn.Module):
    """Concatenated inputs of all modalities -> the best head's group probabilities.

    A hook for explainers; every cell is taken to have every modality. It holds only the
    encoders and the best head (chosen, and its group-layer rows L2-normalised as before
    every forward of the model, when the hook is built), with the softmax as a module, so
    that shap's DeepExplainer can walk it.
    """

    def __init__(self, module: UnitedNetModule) -> None:
        super().__init__()
        head = module.heads[module.best()]
        head.normalize_()
        self.encoders = nn.ModuleList(module.encoders[m] for m in module.modalities)
        self.widths = [e.net[0].in_features for e in self.encoders]
        self.fuser, self.projector, self.classifier = head.fuser, head.projector, head.classifier
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Group probabilities ``(B, K)``."""
        parts = torch.split(x, self.widths, dim=1)
        z = torch.stack([e(p) for e, p in zip(self.encoders, parts, strict=True)], dim=1)
        mask = x.new_ones(x.shape[0], len(self.widths))
        return self.softmax(self.classifier(self.projector(self.fuser(z, mask))))


def _kaiming(module: nn.Module) -> None:
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.kaiming_normal_(sub.weight)
