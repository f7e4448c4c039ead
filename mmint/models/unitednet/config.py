"""UnitedNet's hyper-parameter choices and how the data-dependent defaults are resolved."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from mmint.config import plain
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models.hparams import check_choice
from mmint.nn.balancing import METHODS as BALANCING_METHODS
from mmint.nn.encoders import ENCODERS

TASKS = ("unsupervised", "supervised", "pgc_only", "group_only", "joint")
ALTERNATIONS = ("epoch", "batch")
STAGES = ("train", "finetune", "transfer")
GROUP_MODES = ("classification", "clustering")
SELECTION_LOSSES = ("translation", "reconstruction", "cross_entropy", "ddc")
BATCH_CORRECTIONS = ("none", "covariate", "adversarial")

Hidden = Sequence[int] | Mapping[str, Sequence[int]] | None
PerModality = float | Mapping[str, float]


def default_group_mode(task: str, spec: DataSpec) -> str:
    """``classification`` for supervised tasks (and group_only / joint with labels)."""
    if task == "supervised":
        return "classification"
    if task in ("group_only", "joint") and spec.n_labels > 0:
        return "classification"
    return "clustering"


def resolve_n_groups(n_groups: int | None, task: str, mode: str, spec: DataSpec) -> int:
    """Groups per head: the label count for classification, else given or from the labels."""
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


def default_hidden(n_in: int) -> list[int]:
    """``[clip(n/2, 32, 512), clip(n/4, 32, 256)]``."""
    return [min(512, max(32, n_in // 2)), min(256, max(32, n_in // 4))]


def per_modality_widths(
    value: Hidden, mods: list[str], default: Callable[[str], list[int]]
) -> dict[str, list[int]]:
    """Hidden widths per modality from one list, a mapping, or the default."""
    if value is None:
        return {m: list(default(m)) for m in mods}
    if isinstance(value, Mapping):
        return {m: [int(w) for w in value[m]] if m in value else list(default(m)) for m in mods}
    return {m: [int(w) for w in value] for m in mods}


def per_modality_value(value: PerModality | None, mods: list[str]) -> dict[str, float]:
    """A float per modality from one float or a mapping (missing modalities: 0)."""
    if value is None:
        return {m: 0.0 for m in mods}
    if isinstance(value, Mapping):
        return {m: float(value.get(m, 0.0)) for m in mods}
    return {m: float(value) for m in mods}


def is_binary(spec: DataSpec, m: str) -> bool:
    """Whether modality ``m``'s model input is 0/1."""
    transform = spec.transforms.get(m, "binarize" if spec.kinds[m] == "binary" else "none")
    return transform == "binarize" or (spec.kinds[m] == "binary" and transform == "none")


FUSERS = ("weighted_mean", "feature_weighted_mean")
LATENT_PROJECTORS = ("identity", "linear")


@dataclass(frozen=True)
class Networks:
    """UnitedNet's networks, resolved for one dataset (what the module is built from).

    Attributes
    ----------
    modalities
        Modality names in a fixed order.
    n_features
        Input width per modality.
    binary
        Whether each modality's model input is 0/1 (binary cross-entropy, sigmoid output).
    latent_dim
        Shared latent width ``d``.
    encoder_hidden, decoder_hidden, discriminator_hidden
        Hidden widths per modality.
    n_groups
        Clusters or classes ``K`` of each head.
    n_head
        Number of parallel group heads.
    fuser
        ``"weighted_mean"`` or ``"feature_weighted_mean"``.
    projector_dim, projector_norm
        Head projector width and whether it has ``LayerNorm + ReLU``.
    latent_projector
        ``"identity"`` or ``"linear"`` (``d -> d``), used by the contrastive loss only.
    activation, latent_activation, latent_norm
        Hidden activation; activation and norm (``None``, ``"batch"``, ``"layer"``) of the
        encoder output layer.
    dropout, decoder_dropout, discriminator_dropout
        Dropout probability per modality of the encoders, decoders and discriminators (the
        original's decoders have none; its discriminators copy the encoders').
    dropout_first_only
        Dropout after the first layer only (every network).
    batch_norm, layer_norm
        Norms of the hidden layers of encoders and decoders.
    decoder_batch_norm
        BatchNorm on the decoders' hidden layers.
    discriminator_out_dim, discriminator_out_norm
        Discriminator output units and norm. LayerNorm over one unit makes the discriminator a
        constant (the original's atacseq and dbitseq configs): such a discriminator is built
        without the LayerNorm and flagged (``UnitedNetModule.constant_discriminator``), so that
        the plan can reproduce the original (GAN off) when asked.
    init
        ``"kaiming_normal"`` (every ``Linear`` weight, as in the reference) or ``"default"``.
    n_covariates
        Width of a covariate (the one-hot batch) appended to every decoder's input; 0: none
        (the reference).
    encoder
        ``"mlp"`` (the reference) or ``"residual"`` (:class:`~mmint.nn.encoders.ResidualMLP`).
    variational
        A reparameterised Gaussian latent on each encoder
        (:class:`~mmint.nn.encoders.VariationalLatent`).
    """

    modalities: tuple[str, ...]
    n_features: dict[str, int]
    binary: dict[str, bool]
    latent_dim: int
    encoder_hidden: dict[str, list[int]]
    decoder_hidden: dict[str, list[int]]
    discriminator_hidden: dict[str, list[int]]
    n_groups: int
    n_head: int = 1
    fuser: str = "weighted_mean"
    projector_dim: int = 100
    projector_norm: bool = True
    latent_projector: str = "identity"
    activation: str = "relu"
    latent_activation: str | None = None
    latent_norm: str | None = "layer"
    dropout: dict[str, float] = field(default_factory=dict)
    decoder_dropout: dict[str, float] = field(default_factory=dict)
    discriminator_dropout: dict[str, float] = field(default_factory=dict)
    dropout_first_only: bool = False
    batch_norm: bool = False
    layer_norm: bool = False
    decoder_batch_norm: bool = False
    discriminator_out_dim: int = 1
    discriminator_out_norm: str | None = None
    init: str = "kaiming_normal"
    n_covariates: int = 0
    encoder: str = "mlp"
    variational: bool = False

    @classmethod
    def resolve(cls, hp: Mapping[str, Any], spec: DataSpec, n_covariates: int) -> Networks:
        """The networks of a model's (already resolved) hyper-parameters ``hp`` on ``spec``."""
        mods = list(spec.modalities)
        check_choice("fuser", hp["fuser"], FUSERS)
        check_choice("latent_projector", hp["latent_projector"], LATENT_PROJECTORS)
        dropout = per_modality_value(hp["dropout"], mods)
        d_drop = hp["discriminator_dropout"]
        d_bn = hp["decoder_batch_norm"]
        names = {f.name for f in fields(cls)} - {"modalities", "n_features", "binary"}
        given = {k: hp[k] for k in names if k in hp}
        return cls(
            **{
                **given,
                "modalities": tuple(mods),
                "n_features": dict(spec.n_features),
                "binary": {m: is_binary(spec, m) for m in mods},
                "dropout": dropout,
                "decoder_dropout": per_modality_value(hp["decoder_dropout"], mods),
                "discriminator_dropout": dropout
                if d_drop is None
                else per_modality_value(d_drop, mods),
                "decoder_batch_norm": bool(hp["batch_norm"] if d_bn is None else d_bn),
                "n_covariates": n_covariates,
            }
        )


def resolve_hparams(given: Mapping[str, Any], spec: DataSpec) -> dict[str, Any]:
    """Check the constructor's hyper-parameters once and fill the data-dependent defaults.

    Returns plain values (Hydra containers turned into dicts and lists) with ``group_mode``,
    ``n_groups``, ``latent_dim``, the hidden widths and ``batch_correction`` resolved, so that
    a checkpoint's hyper-parameters rebuild the same networks on any data.
    """
    hp = plain(dict(given))
    for key, allowed in (
        ("task", TASKS),
        ("alternation", ALTERNATIONS),
        ("stage", STAGES),
        ("fuser", FUSERS),
        ("latent_projector", LATENT_PROJECTORS),
        ("encoder", ENCODERS),
        ("loss_balancing", BALANCING_METHODS),
    ):
        check_choice(key, hp[key], allowed)
    if hp["group_mode"] is not None:
        check_choice("group_mode", hp["group_mode"], GROUP_MODES)
    if hp["selection_loss"] is not None:
        check_choice("selection_loss", hp["selection_loss"], SELECTION_LOSSES)
    if hp["batch_correction"] is None:
        hp["batch_correction"] = "covariate" if spec.n_batches > 1 else "none"
    check_choice("batch_correction", hp["batch_correction"], BATCH_CORRECTIONS)
    if spec.n_batches < 2:
        hp["batch_correction"] = "none"  # nothing to correct: the reference's network
    if hp["n_head"] < 1:
        raise InputError(f"n_head={hp['n_head']}", "model.n_head", "use at least 1 head")
    mods = list(spec.modalities)
    hp["group_mode"] = hp["group_mode"] or default_group_mode(hp["task"], spec)
    hp["n_groups"] = resolve_n_groups(hp["n_groups"], hp["task"], hp["group_mode"], spec)
    hp["latent_dim"] = hp["latent_dim"] or (64 if max(spec.n_features.values()) >= 1000 else 32)
    enc = per_modality_widths(
        hp["encoder_hidden"], mods, lambda m: default_hidden(spec.n_features[m])
    )
    hp["encoder_hidden"] = enc
    hp["decoder_hidden"] = per_modality_widths(
        hp["decoder_hidden"], mods, lambda m: list(reversed(enc[m]))
    )
    hp["discriminator_hidden"] = per_modality_widths(
        hp["discriminator_hidden"], mods, lambda m: [64]
    )
    return hp
