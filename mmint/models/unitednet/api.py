"""UnitedNet's user interface (the model interface of ``mmint.models.base``) and its inputs,
as a mixin of the LightningModule (:mod:`.plan`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmint import keys
from mmint.models.base import Batch
from mmint.models.inputs import dense, step_inputs
from mmint.models.unitednet.hooks import GroupNet, TranslationNet
from mmint.nn.batch import batch_one_hot


class UnitedNetAPI:
    """Latents, joint latent, translations and groups of a batch; inputs, masks and noise."""

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
        x = dense(batch[src])
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

    # ------------------------------------------------------------- hooks of mmint.explain
    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        """Explain hook: ``E_src`` then ``D_dst`` (with the batch covariate ``batch_code`` when
        the decoders take one, a sigmoid for a binary target) as a :class:`TranslationNet`."""
        return TranslationNet(self.module, src, dst, batch_code=batch_code)

    def group_network(self) -> nn.Module | None:
        """Explain hook: the best head's :class:`GroupNet` (``None`` for ``pgc_only``). Its
        group-layer rows are L2-normalised first, as before every forward of the model."""
        return None if self.task == "pgc_only" else GroupNet(self.module)

    def group_count(self) -> int | None:
        """Clusters / classes per head (``None`` for ``pgc_only``)."""
        return None if self.task == "pgc_only" else int(self.module.n_groups)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Older checkpoints: no best-head votes, group-layer rows normalised (they used to
        be normalised before each forward, not after each step)."""
        state = checkpoint.get("state_dict", {})
        key = "module.head_votes"
        if key not in state:
            state[key] = torch.zeros(int(self.hparams["n_head"]), dtype=torch.long)
        for name, w in state.items():
            if name.startswith("module.heads.") and name.endswith("classifier.weight"):
                norm = w.norm(dim=1, keepdim=True)
                if (norm - 1).abs().max() > 1e-4:  # untouched when already unit rows (resume)
                    state[name] = w / norm.clamp_min(1e-12)

    # ---------------------------------------------------------------------- helpers
    def _inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return step_inputs(batch, self.modalities, dtype=self.dtype)

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

    def _cov(self, batch: Batch | None) -> Tensor | None:
        """The decoders' covariate: one-hot batch codes, or ``None`` (no batch correction)."""
        k = self.module.n_covariates
        return batch_one_hot(batch[keys.BATCH], k, self.seen_batches) if k else None
