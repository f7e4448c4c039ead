"""A FAKE original UnitedNet for the tests: a tiny package ``src`` with the original's public
surface (``src.interface.UnitedNet``, ``src.data.create_dataloader``,
``src.scripts.run_through_dataloader``, a ``src/configs/__init__.py`` that cannot be imported)
and trivial networks: fixed seeded linear encoders and decoders, the fused latent the mean of
the modality latents, groups the sign of its first coordinate; ``train`` runs one validation
pass per epoch through ``scripts.run_through_dataloader`` (the adapter's epoch clock), under a
tqdm bar over the epochs as the original's ``scripts`` draws it. None of the original's code."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

FAKE = {
    "src/__init__.py": "",
    "src/configs/__init__.py": "raise ImportError('the original loads configs on Windows only')\n",
    "src/configs/default.py": "default_config = {}\n",
    "src/modules.py": """
        import torch

        class Net(torch.nn.Module):
            def __init__(self, config):
                super().__init__()
                self.config = config
                g = torch.Generator().manual_seed(7)
                d = config["encoders"][0]["output"]
                self.enc = torch.nn.ParameterList(
                    [torch.nn.Parameter(torch.randn(e["input"], d, generator=g) / e["input"])
                     for e in config["encoders"]])
                self.dec = torch.nn.ParameterList(
                    [torch.nn.Parameter(torch.randn(d, e["output"], generator=g))
                     for e in config["decoders"]])

            def outputs(self, xs):
                zs = [x @ w for x, w in zip(xs, self.enc)]
                trans = [[(z @ dw).numpy() for z in zs] for dw in self.dec]
                fused = torch.stack(zs).mean(0)
                return trans, (fused[:, 0] > 0).long().numpy(), fused.numpy()
    """,
    "src/interface.py": """
        import os
        import torch
        from src import scripts
        from src.data import create_dataloader
        from src.modules import Net

        class UnitedNet:
            def __init__(self, save_path, device, technique):
                self.save_path, self.model = save_path, Net(technique)

            def train(self, adatas, adatas_val=None, init_classify=False):
                assert adatas_val is not None and "label" in adatas[0].obs
                assert self.model.config["train_epochs"] >= 1
                val = create_dataloader(self.model, adatas_val)
                for _ in scripts.tqdm(range(self.model.config["train_epochs"])):
                    # as the original: each epoch ends with a validation pass
                    with torch.no_grad():
                        scripts.run_through_dataloader(
                            self.model, val, best_model_path="train_best"
                        )
                torch.save(self.model, os.path.join(self.save_path, "train_best.pt"))
    """,
    "src/data.py": """
        import torch

        def create_dataloader(model, adatas, shuffle=False):
            return [[torch.as_tensor(a.X) for a in adatas]]
    """,
    "src/scripts.py": """
        from tqdm import tqdm  # as the original: a bar over the training epochs

        def run_through_dataloader(model, loader, infer_model=True, best_model_path=None):
            return model.outputs(loader[0])
    """,
}


def write_fake(root: Path) -> Path:
    """Write the fake package under ``root``; return ``root``."""
    for rel, text in FAKE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def installed_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake written to tmp_path and named by ``$MMINT_UNITEDNET_ORIGINAL`` (a fixture's
    body); its ``src`` modules are dropped afterwards."""
    root = write_fake(tmp_path / "unitednet_checkout")
    monkeypatch.setenv("MMINT_UNITEDNET_ORIGINAL", str(root))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
        del sys.modules[name]
